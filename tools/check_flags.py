"""Check that every stage of a shell run would accept its command line, without running any stage: each command is
parsed by the parsers that would read it for real (torchrun's own for the launcher, then the stage's `main` up to
the moment its argparse parser returns), in one process, in a few seconds.

    bash scripts/run1000.sh --plan              # the real run's commands: writes the plan, then runs this on it
    bash scripts/run1000.sh --dry-run --plan    # the dry run's commands (real flags + toy overrides)
    python tools/check_flags.py PLAN [--json OUT]

PLAN has one stage a line, `NAME<TAB>COMMAND` with the command's words shell-quoted (`stage` in scripts/common.sh
writes it when NANOCHAT_PLAN names a file). A misspelt flag, a value of the wrong type or a bad choice fails here
with the stage's name and argparse's message; exit status 1. `--json OUT` saves every stage's parsed flags (what
the stage would have run with), so two plans can be compared.
"""
import argparse, contextlib, io, json, runpy, shlex, sys


class Parsed(BaseException):
    "Raised the moment a stage's parser returns: stops the stage before any work (BaseException: no handler eats it)."
    def __init__(self, ns): self.ns = ns


@contextlib.contextmanager
def stop_after_parsing():
    orig_args, orig_known = argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args
    inside = [False]
    def parse_args(self, *a, **kw):
        inside[0] = True
        try: ns = orig_args(self, *a, **kw)
        finally: inside[0] = False
        raise Parsed(ns)
    def parse_known_args(self, *a, **kw):
        if inside[0]: return orig_known(self, *a, **kw)      # parse_args calls it: let parse_args finish
        ns, extra = orig_known(self, *a, **kw)
        raise Parsed(ns)
    argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args = parse_args, parse_known_args
    try: yield
    finally: argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args = orig_args, orig_known


def target(words):
    "(module, argv) that the command runs: `python -m MOD ARGS` or `torchrun [launcher flags] -m MOD [--] ARGS`."
    if words[0] == "torchrun":
        from torch.distributed.run import get_args_parser
        a = get_args_parser().parse_args(words[1:])          # torchrun's flags are checked by torchrun's parser
        if not a.module: raise ValueError("torchrun without -m: the stages run modules (-m scripts.NAME)")
        return a.training_script, list(a.training_script_args)
    if len(words) >= 3 and words[0].startswith("python") and words[1] == "-m": return words[2], words[3:]
    raise ValueError(f"not a `python -m` or `torchrun -m` command: {shlex.join(words)}")


def check_stage(words):
    "The stage's parsed flags as a dict; raises ValueError with argparse's message when the command line is bad."
    module, argv = target(words)
    err, saved = io.StringIO(), sys.argv
    sys.argv = [module] + argv
    try:
        with stop_after_parsing(), contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            runpy.run_module(module, run_name="__main__", alter_sys=False)
    except Parsed as p: return {"module": module, "argv": argv, "flags": {k: v for k, v in sorted(vars(p.ns).items())}}
    except SystemExit as e:   # argparse's message is the last line of its output (the usage lines come first)
        msg = (err.getvalue().strip().splitlines() or [""])[-1]
        raise ValueError(f"{module} rejects its flags (exit {e.code}): {msg}") from None
    finally: sys.argv = saved
    raise ValueError(f"{module} finished without parsing a command line: it cannot be checked without running it")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("plan", help="the plan file (NAME<TAB>shell-quoted command per line)")
    p.add_argument("--json", help="write every stage's parsed flags here")
    args = p.parse_args(argv)
    try: lines = [l.rstrip("\n").split("\t", 1) for l in open(args.plan) if l.strip()]
    except OSError as e: raise SystemExit(f"error: cannot read the plan: {e}")
    stages, bad = [], 0
    for i, parts in enumerate(lines, 1):
        if len(parts) != 2: raise SystemExit(f"error: {args.plan}:{i}: expected NAME<TAB>COMMAND, got {parts[0]!r}")
        name, cmd = parts
        try:
            st = check_stage(shlex.split(cmd))
            stages.append({"stage": name, **st})
            print(f"ok    {name:16s} {st['module']} ({len(st['argv'])} args)")
        except (ValueError, SystemExit) as e:
            bad += 1
            print(f"FAIL  {name:16s} {e}")
    if args.json:
        with open(args.json, "w") as f: json.dump(stages, f, indent=1, default=str)
    print(f"{len(lines) - bad} of {len(lines)} stages accept their flags" + ("" if not bad else f"; {bad} do not"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
