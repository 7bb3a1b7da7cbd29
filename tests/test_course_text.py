"""The course text speaks about the model and the code only.

A learner has the notebooks, the lesson guides and public sources — nothing else. So no text in `nbs/*.ipynb`,
`lessons/**/*.md` or `README.md` may point at documents a learner does not have ("our notes", "design notes",
"bug #5" of some private list, "§14" of an unnamed document) or talk about how and where the course was written
("this session", "the author's machine"). Cite a paper (arXiv id), an upstream issue/PR/commit by URL, or explain
the thing inline. Each failure names file, cell (or line) and the phrase.
"""
import json, re, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]

# (pattern, why it is not allowed); matched case-insensitively, one line at a time
BANNED = [
    (r"\bour (own )?notes\b", "internal notes a learner does not have"),
    (r"\bdesign (notes?|docs?|documents?)\b", "internal design documents"),
    (r"\breference notes\b", "internal notes about the reference"),
    (r"\binternal (notes?|docs?|documents?)\b", "internal documents"),
    (r"\bnanochat-reference\b|course-anchors\.md|shared/design", "an internal file"),
    (r"\bbug #\d+", "a private bug list (link the upstream issue: github.com/karpathy/nanochat/...)"),
    (r"\bissue #?\d+\b", "a private issue tracker (link the upstream issue by URL)"),
    (r"\bthis session\b|\bsession that (wrote|built|made)\b", "how the course was written"),
    (r"\b(notebooks?|course|lessons?) (was|were) (built|written|developed|authored|made)\b", "how the course was written"),
    (r"\bthe author\b(?!s)|\bthe author's\b", "who wrote the course and where"),
    (r"\b(my|our) (machine|laptop|box|workstation)\b", "the author's hardware"),
    (r"\bthe integrator\b|\bthe brief\b", "how the course was written"),
    (r"\b(busy|quiet|loaded|shared) (machine|box)\b|\b\d+-core (CPU )?box\b|\bCPU box\b|\bmachine this busy\b", "the machine the text was measured on (say 'measured on a 2-core CPU')"),
    (r"\bcourse's (authors|CI)\b|\bthis course's CI\b", "how the course was written and tested"),
]
URL_OK = re.compile(r"https?://\S*github\.com/", re.I)   # "bug #3" / "issue 12" next to a github link is a citation
SECTION = re.compile(r"§\s*(\d+)(\.\d+)?")
PAPER = re.compile(r"arxiv|paper|\bet al\b|\bRFC\b", re.I)

def _hit(pat, line):
    m = re.search(pat, line, re.I)
    if m and pat.startswith((r"\bbug", r"\bissue")) and URL_OK.search(line): return None
    return m

def _texts():
    "(where, text, number of sections of the document) for every notebook cell and every Markdown file."
    for nb in sorted((ROOT / "nbs").glob("*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        src = ["".join(c["source"]) for c in cells]
        heads = sum(1 for c, s in zip(cells, src) if c["cell_type"] == "markdown" for l in s.splitlines()
                    if re.match(r"#{2,3} ", l))
        for i, s in enumerate(src): yield f"{nb.relative_to(ROOT)}:cell {i}", s, heads
    for md in [ROOT / "README.md", *sorted((ROOT / "lessons").rglob("*.md"))]:
        yield str(md.relative_to(ROOT)), md.read_text(), 15

def findings():
    out = []
    for where, text, nsec in _texts():
        for ln, line in enumerate(text.splitlines(), 1):
            loc = f"{where}:{ln}" if "cell" not in where else f"{where} line {ln}"
            for pat, why in BANNED:
                m = _hit(pat, line)
                if m: out.append(f"{loc}: {m.group(0)!r} — {why}")
            for m in SECTION.finditer(line):
                # "§3" is fine for a section of this notebook (or of a notebook it names) and for a paper's section;
                # "§14" or "§2.3" of an unnamed document is not
                if PAPER.search(line): continue
                if m.group(2) or int(m.group(1)) > nsec:
                    out.append(f"{loc}: {m.group(0)!r} — a section of a document the learner does not have "
                               "(name the notebook/paper, or explain inline)")
    return out

def test_banned_phrases_self_check():
    "The rules catch what they are for, and leave ordinary course text alone."
    bad = ["as our notes say", "see the design notes", "(bug #5)", "issue 14 asked", "on the author's machine",
           "in this session we", "reference notes §14", "the 2-core box this course was built on",
           "the session that wrote this notebook", "(`nanochat-reference` §1)",
           "within the noise of a busy machine", "~30 s on a quiet 2-core box", "(this course's CI)", "(For the course's authors: ...)",
           "Measured on the shared 2-core CPU box", "On a machine this busy, single figures move"]
    ok = ["the authors of the paper", "bug #5 (https://github.com/karpathy/nanochat/issues/5)", "a helper function",
          "written by the runtime", "the GPT-3 paper §4",
          "measured on a 2-core CPU", "start_new_session=True", "the notebook was run with"]
    hit = lambda s: any(_hit(p, s) for p, _ in BANNED)
    for s in bad: assert hit(s), s
    for s in ok: assert not hit(s), s

def test_course_text_has_no_internal_references():
    out = findings()
    assert not out, ("course text must speak about the model and the code only: cite public sources or explain "
                     "inline (tests/test_course_text.py):\n" + "\n".join(out))

def test_section_signs(tmp_path, monkeypatch):
    "§N is fine for a section the notebook has, or a paper's; §14 of a 3-section notebook or §1.4 is flagged."
    md = lambda s: {"cell_type": "markdown", "metadata": {}, "source": s}
    (tmp_path / "nbs").mkdir(); (tmp_path / "lessons").mkdir(); (tmp_path / "README.md").write_text("# x\n")
    (tmp_path / "nbs" / "01_x.ipynb").write_text(json.dumps({"cells": [
        md("## one\n## two\n### three"), md("as in §2 above"), md("GPT-3 (arXiv:2005.14165, §4)"),
        md("see §14 of the notes"), md("a table (§1.4)")]}))
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    out = findings()
    assert [o.split(":")[1].split(" line")[0] for o in out] == ["cell 3", "cell 4"], out
