"""Round-trip notebooks through a plain-text "percent" script, so notebooks can be written and reviewed as text.

    python tools/nbpy.py to-nb  draft.py nbs/03_gpt.ipynb   # text -> notebook (keeps existing cell ids by position)
    python tools/nbpy.py to-py  nbs/03_gpt.ipynb draft.py   # notebook -> text

Format: a line `# %% [markdown]` starts a markdown cell (its lines are written as `# text`), a line `# %%` starts
a code cell. The notebook (nbs/*.ipynb) stays the source of truth; the text form is only a way to edit it.
"""
import sys, nbformat
from pathlib import Path

def py_to_cells(text):
    cells, kind, buf = [], None, []
    def flush():
        if kind is None: return
        src = "\n".join(buf).strip("\n")
        if kind == "markdown": src = "\n".join(l[2:] if l.startswith("# ") else l.lstrip("#") for l in src.splitlines())
        cells.append((kind, src))
    for line in text.splitlines():
        if line.startswith("# %%"):
            flush(); kind, buf = ("markdown" if "[markdown]" in line else "code"), []
        else: buf.append(line)
    flush()
    return cells

def to_nb(src, dst):
    cells = py_to_cells(Path(src).read_text())
    old = nbformat.read(dst, as_version=4) if Path(dst).exists() else None
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"display_name": "python3", "language": "python", "name": "python3"}}
    for i, (kind, s) in enumerate(cells):
        c = nbformat.v4.new_markdown_cell(s) if kind == "markdown" else nbformat.v4.new_code_cell(s)
        if old is not None and i < len(old.cells) and old.cells[i].cell_type == kind: c.id = old.cells[i].id
        nb.cells.append(c)
    nbformat.validate(nb)
    nbformat.write(nb, dst)

def to_py(src, dst):
    nb, out = nbformat.read(src, as_version=4), []
    for c in nb.cells:
        if c.cell_type == "markdown": out += ["# %% [markdown]"] + [("# " + l).rstrip() for l in c.source.splitlines()]
        else: out += ["# %%", c.source]
        out.append("")
    Path(dst).write_text("\n".join(out))

if __name__ == "__main__":
    cmd, a, b = sys.argv[1:4]
    {"to-nb": to_nb, "to-py": to_py}[cmd](a, b)
