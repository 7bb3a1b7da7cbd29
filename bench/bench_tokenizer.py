"""Tokenizer benchmark: rustbpe vs HuggingFace `tokenizers` BPE training, then encode throughput of
rustbpe.batch_encode, tiktoken (built from rustbpe's vocabulary) and HF.

    python -m bench.bench_tokenizer [--mb 50] [--vocab 65536] [--encode-mb 5]

Text, always offline: parquet shards under $NANOCHAT_BASE_DIR/base_data*/ if there are any, else the
Python docs' help topics, the standard library's docstrings and its sources, repeated up to --mb MB.
Both trainers get the same documents, the same split regex (nanochat's) and the same vocab size.
"""
import argparse, ast, os, sys, sysconfig, time
from pathlib import Path

import rustbpe


def offline_corpus():
    """Documents from the Python install: pydoc help topics, every docstring of the stdlib, then the
    stdlib sources themselves (~30 MB of code), so that even a 65K vocabulary has enough distinct
    text to learn from (the prose alone, ~2 MB, runs out of pairs after ~31K merges)."""
    from pydoc_data.topics import topics
    docs = [topics[k] for k in sorted(topics)]
    sources = []
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py")):
        if "site-packages" in path.parts:
            continue
        try:
            source = path.read_text(encoding="utf-8")
            tree = None if "test" in path.parts else ast.parse(source)  # the tests: code only (parsing is slow)
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        sources.append(source)
        for node in ast.walk(tree) if tree else []:
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) > 40:
                    docs.append(doc)
    return docs + sources


def parquet_corpus(max_chars):
    "Documents from nanochat's parquet shards, if any are on disk (FineWeb-EDU or the embedded corpus)."
    base = Path(os.environ.get("NANOCHAT_BASE_DIR", Path.home() / ".cache" / "nanochat"))
    files = sorted(base.glob("base_data*/shard_*.parquet"))
    if not files:
        return []
    import pyarrow.parquet as pq
    docs, n = [], 0
    for f in files:
        for doc in pq.read_table(f, columns=["text"]).column("text").to_pylist():
            docs.append(doc)
            n += len(doc)
            if n >= max_chars:
                return docs
    return docs


def build_text(mb):
    "At least `mb` MB (of characters) of documents; a small corpus is repeated."
    target = int(mb * 1e6)
    docs = parquet_corpus(target)
    source = "parquet shards"
    if sum(map(len, docs)) < target // 10:  # too little real data: use the offline corpus
        docs, source = offline_corpus(), "pydoc topics + stdlib docstrings + stdlib sources"
    unique = sum(map(len, docs))
    out, n = [], 0
    while n < target:
        for d in docs:
            out.append(d)
            n += len(d)
            if n >= target:
                break
    return out, source, unique


def hf_tokenizer(pattern):
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    tok = Tokenizer(models.BPE(byte_fallback=True, unk_token=None, fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    return tok


def timed(f):
    t0 = time.perf_counter()
    out = f()
    return out, time.perf_counter() - t0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mb", type=float, default=50, help="training text size in MB (default 50)")
    p.add_argument("--vocab", type=int, default=65536, help="vocab size incl. the 256 bytes (default 65536)")
    p.add_argument("--encode-mb", type=float, default=5, help="text size for the encode benchmark (default 5)")
    p.add_argument("--skip-hf", action="store_true", help="only time rustbpe")
    args = p.parse_args()
    if args.vocab < 256:
        p.error(f"--vocab must be at least 256, got {args.vocab}")
    if args.mb <= 0 or args.encode_mb <= 0:
        p.error("--mb and --encode-mb must be positive")

    pattern = rustbpe.NANOCHAT_PATTERN
    (docs, source, unique), t = timed(lambda: build_text(args.mb))
    n_chars = sum(map(len, docs))
    print(f"text: {n_chars / 1e6:.1f} MB in {len(docs):,} documents from {source} "
          f"({unique / 1e6:.1f} MB distinct), built in {t:.1f}s; {os.cpu_count()} CPUs; vocab {args.vocab:,}")

    # --- training
    tok = rustbpe.Tokenizer()
    _, t_rust = timed(lambda: tok.train_from_iterator(iter(docs), args.vocab, pattern=pattern))
    print(f"train rustbpe:    {t_rust:7.2f} s")
    if not args.skip_hf:
        from tokenizers import pre_tokenizers, trainers
        hf = hf_tokenizer(pattern)
        trainer = trainers.BpeTrainer(vocab_size=args.vocab, min_frequency=0, show_progress=False, special_tokens=[],
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        _, t_hf = timed(lambda: hf.train_from_iterator(iter(docs), trainer, length=len(docs)))
        print(f"train HF:         {t_hf:7.2f} s   (HF / rustbpe = {t_hf / t_rust:.2f}x)")

    # --- encoding: a slice of the documents
    enc_docs, n = [], 0
    for d in docs:
        if n >= args.encode_mb * 1e6:
            break
        enc_docs.append(d)
        n += len(d.encode("utf-8"))
    mb = n / 1e6
    import tiktoken
    enc = tiktoken.Encoding(name="rustbpe", pat_str=tok.get_pattern(),
                            mergeable_ranks={b: i for b, i in tok.get_mergeable_ranks()}, special_tokens={})
    ids_rust, t = timed(lambda: tok.batch_encode(enc_docs))
    print(f"encode {mb:.1f} MB:  rustbpe.batch_encode {mb / t:7.2f} MB/s")
    ids_tt, t = timed(lambda: enc.encode_ordinary_batch(enc_docs, num_threads=os.cpu_count()))
    print(f"                 tiktoken             {mb / t:7.2f} MB/s   (same ids as rustbpe: {ids_tt == ids_rust})")
    if not args.skip_hf:
        _, t = timed(lambda: hf.encode_batch(enc_docs, add_special_tokens=False))
        print(f"                 HF encode_batch      {mb / t:7.2f} MB/s")
    n_tokens = sum(map(len, ids_rust))
    print(f"compression: {n / n_tokens:.2f} bytes/token")


if __name__ == "__main__":
    sys.exit(main())
