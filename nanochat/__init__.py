"""A notebook-first course that rebuilds a full ChatGPT-style LLM pipeline from scratch

Modules:

- `nanochat.sft`: Padded batches of whole conversations, a loss on the tokens the assistant must produce and nothing else, normalised by the number of such tokens in the whole optimizer step — so 2 ranks give the same gradient as 1 process with accumulation, and how examples fall into micro-batches does not matter. And a chat CLI to talk to the result."""

__version__ = "0.1.0"
