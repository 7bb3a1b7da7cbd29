"""Generate the learner's exercise notebooks from the solution notebooks in nbs/ (a learner checks one with
`tools/check_exercise.py`: it runs the notebook and names the first exercise whose checks fail, with its hint).

    python tools/make_exercises.py            # write lessons/LNN_*/exercises/NN_name.ipynb for every tagged notebook
    python tools/make_exercises.py --check    # exit 1 (listing them) when exercise notebooks are stale/missing/extra
    python tools/make_exercises.py --stats    # exercise cells and learner-written lines per notebook, and the capstone's

A code cell in nbs/ whose directives include `#| exercise: <hint>` is a solution: in the exercise notebook every
function in it (top level, methods of classes, `@patch` functions) keeps its decorators, signature and docstring and
its body becomes `raise NotImplementedError("<hint>")`; the cell's other statements stay. `#| exercise-drop` cells
are left out. Every `#|` directive line is stripped; the test flags (slow, gpu, ...) move to the cell's tags.
"""
import ast, copy, json, os, re, sys
from pathlib import Path
import nbformat

ROOT = Path(__file__).resolve().parents[1]
NBS, LESSONS = ROOT / "nbs", ROOT / "lessons"
FLAGS = ("slow", "gpu", "multigpu", "net", "notest")          # pyproject's tst_flags
DIRECTIVE = re.compile(r"^\s*#\|\s*([\w-]+)\s*:?\s*(.*?)\s*$")

def lesson_table():
    """[(lesson title, guide path, [notebook stems])] from the table 'lesson | notebooks | you build' of
    lessons/README.md: the one place that says which lesson a notebook belongs to (the site's sidebar reads it too)."""
    rows = []
    for line in (LESSONS / "README.md").read_text().splitlines():
        m = re.match(r"\|\s*\[([^\]]+)\]\(([^)]+/README\.md)\)\s*\|([^|]*)\|", line)
        if m: rows.append((m[1], LESSONS / m[2], re.findall(r"`([^`]+)`", m[3])))
    if not rows: raise SystemExit("no lesson table found in lessons/README.md")
    return rows

def lesson_dir(stem):
    "The lesson directory of notebook `stem`: the row of lessons/README.md's table that lists it."
    d = next((guide.parent.name for _, guide, stems in lesson_table() if stem in stems), None)
    if d is None: raise ValueError(f"{stem}: no lesson lists this notebook; add it to the lesson table of lessons/README.md")
    return LESSONS / d

def directives(src):
    "The cell's `#|` directives as {name: value} (nbdev reads them from the cell's leading comment lines)."
    return {m[1]: m[2] for l in src.splitlines() if (m := DIRECTIVE.match(l))}

def functions(body):
    "Functions a learner writes: top-level defs and methods, through classes and if/try/with blocks, not nested defs."
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)): yield node
        elif isinstance(node, (ast.ClassDef, ast.If, ast.Try, ast.With)):
            yield from functions(node.body + getattr(node, "orelse", []) + getattr(node, "finalbody", []) +
                                 [s for h in getattr(node, "handlers", []) for s in h.body])

def stub_cell(src, hint):
    """Replace the body of every function in `src` by `raise NotImplementedError(hint)`, editing the source text so
    that everything outside the bodies (comments, layout) survives. Returns (new source, names, learner lines)."""
    src = src.rstrip("\n") + "\n"
    tree, lines, starts = ast.parse(src), src.splitlines(keepends=True), [0]
    for l in lines: starts.append(starts[-1] + len(l))
    off = lambda ln, col: starts[ln - 1] + len(lines[ln - 1].encode()[:col].decode())   # ast columns are utf-8 bytes
    raise_ = f"raise NotImplementedError({json.dumps(hint, ensure_ascii=False)})"
    edits, names, written = [], [], 0
    for fn in functions(tree.body):
        names.append(fn.name); body = fn.body
        doc = body[0] if ast.get_docstring(fn, clean=False) is not None else None
        rest = body[1:] if doc else body
        if rest:
            seg = src[off(rest[0].lineno, rest[0].col_offset):off(rest[-1].end_lineno, rest[-1].end_col_offset)]
            written += sum(1 for l in seg.splitlines() if l.strip() and not l.strip().startswith("#"))
        ind = lines[body[0].lineno - 1][:off(body[0].lineno, body[0].col_offset) - starts[body[0].lineno - 1]]
        if not ind.strip():
            # the body starts on a line of its own: replace whole lines, from after the docstring (or the signature)
            # through the last statement and the comment lines that trail it inside the function
            if doc and not rest: edits.append((starts[doc.end_lineno],) * 2 + (ind + raise_ + "\n",)); continue
            a, b = (doc.end_lineno + 1) if doc else rest[0].lineno, body[-1].end_lineno
            while b < len(lines) and lines[b].strip().startswith("#") and lines[b].startswith(ind): b += 1
            edits.append((starts[a - 1], starts[b - 1] + len(lines[b - 1].rstrip("\r\n")), ind + raise_))
        else:  # a one-line def (`def f(x): return x`): move the body onto lines of its own
            ind = re.match(r"\s*", lines[fn.lineno - 1])[0] + "    "
            a, b = off(body[0].lineno, body[0].col_offset), off(body[-1].end_lineno, body[-1].end_col_offset)
            keep = ast.get_source_segment(src, doc) + "\n" + ind if doc else ""
            while a > 0 and src[a - 1] in " \t": a -= 1
            edits.append((a, b, "\n" + ind + keep + raise_))
    for a, b, text in sorted(edits, reverse=True): src = src[:a] + text + src[b:]
    return src.rstrip("\n"), names, written

def build(nb_path, solution=False):
    "The exercise notebook of `nb_path` (with `solution`, the same notebook with the answers kept), with its stats."
    src, rel, cells, stats = nbformat.read(nb_path, as_version=4), lambda p: os.path.relpath(p, ROOT), [], []
    out_path = lesson_dir(nb_path.stem) / "exercises" / nb_path.name
    for c in src.cells:
        if c.cell_type != "code":
            cells.append(nbformat.v4.new_markdown_cell(c.source, id=c.id) if c.cell_type == "markdown"
                         else nbformat.v4.new_raw_cell(c.source, id=c.id)); continue
        d = directives(c.source)
        if "exercise-drop" in d and not solution: continue
        code, meta = "\n".join(l for l in c.source.splitlines() if not DIRECTIVE.match(l)).strip("\n"), {}
        if "exercise" in d:
            if not d["exercise"]: raise ValueError(f"{rel(nb_path)}: cell {c.id}: `#| exercise:` needs a hint for the learner")
            try: stub, names, n = stub_cell(code, d["exercise"])
            except SyntaxError as e: raise ValueError(f"{rel(nb_path)}: cell {c.id}: exercise cell does not parse: {e}") from None
            if not names: raise ValueError(f"{rel(nb_path)}: cell {c.id}: exercise cell defines no function to write")
            if not solution: code = stub
            stats.append((names, n, d["exercise"]))
            meta.update(exercise=d["exercise"], tags=["exercise"])
        if not code.strip(): continue
        if flags := [f for f in FLAGS if f in d]:
            meta["tags"] = meta.get("tags", []) + flags
            code = f"# {'/'.join(flags)} cell: the checks skip it unless NANOCHAT_TEST_FLAGS names {'it' if len(flags) == 1 else 'them'}\n" + code
        cells.append(nbformat.v4.new_code_cell(code, id=c.id, metadata=meta))
    if not stats: return None, out_path, stats
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"display_name": "python3", "language": "python", "name": "python3"}})
    todo = "\n".join(f"{i}. `{'`, `'.join(names)}`: {hint}" for i, (names, _, hint) in enumerate(stats, 1))
    nb.cells = [nbformat.v4.new_markdown_cell(id="exercises-header", source=f"""\
**Exercises for `{rel(nb_path)}`** — generated by `tools/make_exercises.py`; do not edit this file in place, work in
a copy (in this folder, `cp {out_path.name} mine_{out_path.name}`): it is rewritten whenever the course's notebook changes.

Every function whose body is `raise NotImplementedError("...")` is yours to write; the message is the hint. The
cells right after it are its checks: run them, and when they pass move on. Your exercises here:

{todo}

Check the whole notebook from the repository root (it runs every cell, skips the cells tagged slow/gpu/multigpu/
net/notest unless `NANOCHAT_TEST_FLAGS` names them, and names the first exercise whose checks fail, with its hint):

    .venv/bin/python tools/check_exercise.py {rel(out_path.parent)}/mine_{out_path.name}

(Plain `pytest` skips exercise notebooks: they fail until you have written the code.) The solution is
`{rel(nb_path)}`, the notebook this one is made from — read it after you try.""")] + cells
    return nb, out_path, stats

def generate(write=True):
    "Build every exercise notebook; write them, or return the list of files that differ from what is on disk."
    want, problems = {}, []
    for p in sorted(NBS.glob("[0-9]*.ipynb")):
        nb, out, _ = build(p)
        if nb is not None: want[out] = nbformat.writes(nb) + "\n"
    have = {p for p in LESSONS.glob("L*/exercises/[0-9]*.ipynb")}
    for out, text in want.items():
        if not out.exists() or out.read_text() != text:
            problems.append(f"{'stale' if out.exists() else 'missing'}: {os.path.relpath(out, ROOT)}")
            if write: out.parent.mkdir(parents=True, exist_ok=True); out.write_text(text)
    for extra in sorted(have - set(want)):
        problems.append(f"extra: {os.path.relpath(extra, ROOT)} (its notebook has no `#| exercise:` cell)")
        if write: extra.unlink()
    return problems

def _code_lines(node):
    "Lines of code of a def/class, as `ast.unparse` writes it: no docstrings, comments or blank lines."
    node = copy.deepcopy(node)
    for n in [n for n in ast.walk(node) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]:
        if ast.get_docstring(n) is not None: n.body = n.body[1:] or [ast.Pass()]
    return len(ast.unparse(node).splitlines())

def _patched(fn):   # the class a `@patch` function is a method of (its `self` annotation), else None
    if isinstance(fn, ast.FunctionDef) and fn.args.args and any(getattr(getattr(d, "func", d), "id", "") == "patch" for d in fn.decorator_list):
        return getattr(fn.args.args[0].annotation, "id", None)

def capstone_lines():
    """Per capstone adapter, the lines of the course's code behind its reference branch (what it imports and what that
    uses; of a class, `__init__`, `forward`, `step` and the methods called): about what a learner writes for it."""
    mods, per, counted = {}, {}, set()
    def module(m):   # ({name or patched class: [defs]}, {imported name: nanochat module}) of a nanochat module
        if m not in mods:
            tree, defs = ast.parse((ROOT / m.replace(".", "/")).with_suffix(".py").read_text()), {}
            for n in (n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))):
                cls = _patched(n) or n.name   # a method grown with @patch: the last definition is the one that counts
                defs[cls] = [o for o in defs.get(cls, []) if o.name != n.name or cls == n.name] + [n]
            mods[m] = defs, {a.asname or a.name: n.module for n in tree.body if isinstance(n, ast.ImportFrom)
                             and (n.module or "").startswith("nanochat") for a in n.names}
        return mods[m]
    for fn in (n for n in ast.parse((LESSONS / "capstone" / "adapters.py").read_text()).body if isinstance(n, ast.FunctionDef) and n.name[0] != "_"):
        per[fn.name], seen, keep = 0, set(), {a.attr for a in ast.walk(fn) if isinstance(a, ast.Attribute)} | {"__init__", "forward", "step"}
        todo = [(i.module, a.name) for n in fn.body if isinstance(n, ast.If) for i in ast.walk(n)
                if isinstance(i, ast.ImportFrom) and (i.module or "").startswith("nanochat") for a in i.names]
        while todo:
            m, name = todo.pop()
            if (m, name) in seen: continue
            seen.add((m, name)); defs, imported = module(m)
            if name in imported: todo.append((imported[name], name)); continue
            for node in defs.get(name, []):   # a class counts its body and the methods needed here, once overall
                if isinstance(node, ast.ClassDef):
                    parts = [(f"{name}.{f.name}", f) for f in node.body if isinstance(f, ast.FunctionDef) and f.name in keep]
                    head = copy.copy(node); head.body = [f for f in node.body if not isinstance(f, ast.FunctionDef)] or [ast.Pass()]
                    parts.append((name, head))
                else: parts = [(f"{name}.{node.name}" if node.name != name else name, node)] if node.name in keep | {name} else []
                for key, part in parts:
                    if (m, key) not in counted: counted.add((m, key)); per[fn.name] += _code_lines(part)
                    todo += [(m, n.id) for n in ast.walk(part) if isinstance(n, ast.Name) and (n.id in defs or n.id in imported)]
    return per

def main(argv):
    if "--stats" in argv:
        total = 0
        for p in sorted(NBS.glob("[0-9]*.ipynb")):
            _, out, stats = build(p)
            if not stats: continue
            total += (n := sum(s[1] for s in stats))
            print(f"{p.name:24} {len(stats):3} exercise cells {n:5} lines to write   -> {os.path.relpath(out, ROOT)}")
        print(f"{'exercise notebooks':24} {total:25} lines to write in all"); per = capstone_lines()
        print(f"capstone: {sum(per.values())} lines of the course's code behind {len(per)} adapters: " +
              ", ".join(f"{k.removeprefix('run_')} {v}" for k, v in per.items()))
        return 0
    problems = generate(write="--check" not in argv)
    for p in problems: print(p)
    if "--check" in argv and problems:
        print("exercise notebooks out of sync with nbs/: run `python tools/make_exercises.py`"); return 1
    return 0

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
