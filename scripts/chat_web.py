"""Serve a chat model: a web UI, nanochat's streaming API and an OpenAI-compatible API (FastAPI + uvicorn).

    python -m scripts.chat_web -i sft                         # then open http://localhost:8000/
    python -m scripts.chat_web -i sft -n 8                    # one model replica per GPU, 8 GPUs
    python -m scripts.chat_web -i sft --host 127.0.0.1 -p 8080 --max-batch 16

Endpoints: GET / (the UI), POST /chat/completions (nanochat's SSE stream), POST /v1/chat/completions and
GET /v1/models (OpenAI-compatible: point any OpenAI client at http://HOST:PORT/v1), GET /health, GET /stats.
Concurrent requests are batched through the model (--max-batch rows per replica; 1 = one request at a time).
`python -m scripts.chat_web --help` lists every flag. The code lives in nanochat/api.py (nbs/10a_api.ipynb) and the
scheduler it drives in nanochat/serve.py (nbs/10_serving.ipynb).
"""
from nanochat.common import run_cli
from nanochat.api import main

if __name__ == "__main__":
    run_cli(main)
