"""Build the course website: every notebook in nbs/ and every lesson guide, as static HTML pages in `_docs/`.

    python tools/build_site.py                  # -> _docs/ (then: python -m http.server -d _docs 8000)
    python tools/build_site.py --out /tmp/site  # anywhere else

The pages are the notebooks with their saved outputs (nothing is executed: figures, tables and the static renders of
the widgets are the outputs stored in the notebook), the lesson guides (`lessons/**/README.md`) and the top-level
README, with a sidebar in reading order: the landing page (`nbs/index.ipynb`), the lessons' start page, then each
lesson's guide followed by its notebooks, then the capstone. The reading order is the lesson table of
`lessons/README.md` (lesson -> notebooks), so it is written down in one place only.

Relative links between the sources (`03_gpt.ipynb`, `../lessons/L02_transformer/README.md`, an image next to a
guide) are rewritten to the pages and files of the site; a link to a repository file that is not a page (a `.py`
script, say) keeps its text and loses its link. TeX math (`$...$`, `$$...$$`) becomes MathML, which browsers draw
without any script, so the site needs no network. Needs the `docs` extra (latex2mathml) and nbconvert (installed
with jupyterlab).

nbdev's own `nbdev-docs` renders with Quarto, whose PyPI package (`quarto-cli`) downloads its binary from the
internet while it installs; this builder needs only PyPI packages and gives the same pages offline.
"""
import argparse, html, importlib, os, re, shutil, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from make_exercises import DIRECTIVE, lesson_table   # the notebook -> lesson table and the `#|` syntax, written once
NBS, LESSONS = ROOT / "nbs", ROOT / "lessons"
SITE_TITLE = "nanochat course"
# what the builder skips in a notebook: nbdev's `#| hide` cells and `#| default_exp` cells, and the directive
# lines nbdev itself hides (the test-tier flags `#| slow`, `#| gpu`, ... stay: they tell a reader what a cell needs)
HIDE_CELL = {"hide", "default_exp"}
DROP_LINE = {"export", "exporti", "exports", "exercise", "exercise-drop", "hide_line", "filter_stream", "eval"}
SHORT = {"nbs/index.ipynb": "Home", "lessons/README.md": "Start here: how the lessons work",
         "lessons/capstone/README.md": "Capstone", "README.md": "The repository's README"}


def _need(module, extra):
    try: return importlib.import_module(module)
    except ImportError:
        sys.exit(f"build_site: `{module.split('.')[0]}` is missing: install the {extra} (pip install -e \".[{extra.split()[0]}]\")")


# ---- the pages and their order --------------------------------------------------------------------------------

def reading_order():
    "The sidebar: [(section title or None, [source paths])], every notebook of nbs/ and every lesson guide once."
    order = [(None, [NBS / "index.ipynb", LESSONS / "README.md"])]
    seen = set()
    for title, guide, stems in lesson_table():
        nbs = [NBS / f"{s}.ipynb" for s in stems]
        missing = [p.name for p in nbs if not p.exists()]
        if missing: raise SystemExit(f"build_site: lessons/README.md names notebooks that do not exist: {missing}")
        order.append((title, [guide, *nbs])); seen.update(nbs)
    rest = [p for p in sorted(NBS.glob("[0-9]*.ipynb")) if p not in seen]
    if rest: raise SystemExit(f"build_site: notebooks in no lesson of lessons/README.md's table: {[p.name for p in rest]}")
    guides = {g for _, g, _ in lesson_table()}
    others = [p for p in sorted(LESSONS.glob("*/README.md")) if p not in guides]   # the capstone
    order.append(("More", [*others, ROOT / "README.md"]))
    return order


def out_path(src):
    "Where a source file lands in the site, relative to the site root (notebooks at the top, the rest as in the repo)."
    rel = Path(src).resolve().relative_to(ROOT)
    if rel.parts[0] == "nbs" and rel.suffix == ".ipynb": return Path(rel.stem + ".html")
    if rel.suffix == ".md": return rel.with_suffix(".html")
    return rel


# ---- math and links ---------------------------------------------------------------------------------------------

CODE = re.compile(r"(```.*?```|~~~.*?~~~|`[^`\n]+`)", re.S)
MATH = re.compile(r"\$\$(.+?)\$\$|(?<![\\$\w])\$(?![\s$])([^$\n]+?)(?<![\s\\])\$(?![\w$])", re.S)


def tex_to_mathml(md):
    "Replace $...$ and $$...$$ outside code by MathML (left as written where latex2mathml cannot parse it)."
    conv = _need("latex2mathml.converter", "docs extra")
    def one(m):
        tex, display = (m[1], "block") if m[1] is not None else (m[2], "inline")
        try: return conv.convert(tex.strip(), display=display).replace("\n", "")
        except Exception: return m[0]
    return "".join(part if i % 2 else MATH.sub(one, part) for i, part in enumerate(CODE.split(md)))


ASSETS = {".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp"}
ATTR = re.compile(r'\b(href|src)="([^"]*)"')


def rewrite_links(body, src, pages, missing):
    "Relative links of `src` -> paths in the site; links to repository files that are not in the site lose their href."
    here = out_path(src).parent
    def one(m):
        attr, url = m[1], html.unescape(m[2])
        if re.match(r"^([a-z][a-z0-9+.-]*:|#|/)", url, re.I) or not url: return m[0]
        target, _, frag = url.partition("#")
        p = (Path(src).parent / target).resolve()
        try: p.relative_to(ROOT)
        except ValueError: p = None
        if p is None or not p.is_file() or (p not in pages and p.suffix.lower() not in ASSETS):
            missing.append(url)
            return 'data-repo-file="%s"' % html.escape(url) if attr == "href" else m[0]
        pages.setdefault(p, None)                                               # an image: copied with the pages
        new = os.path.relpath(out_path(p), here) + (f"#{frag}" if frag else "")
        return f'{attr}="{html.escape(new)}"'
    body = ATTR.sub(one, body)
    # a guide names its notebooks as code (`nbs/03_gpt.ipynb`): make each name a link to the notebook's page
    def code(m):
        nb = NBS / f"{m[3]}.ipynb"
        if m[1] or nb not in pages: return m[0]
        return f'<a href="{os.path.relpath(out_path(nb), here)}">{m[0]}</a>'
    return re.sub(r"(<a [^>]*>)?<code>(nbs/)?([0-9]\w*)(\.ipynb)?</code>", code, body)


# ---- rendering --------------------------------------------------------------------------------------------------

def directives(src):
    out = {}
    for line in src.splitlines():
        m = DIRECTIVE.match(line)
        if not m: break
        out[m[1]] = m[2]
    return out


def notebook_body(path):
    "The notebook as HTML (nbconvert's basic template, saved outputs), with nbdev's hidden cells left out."
    nbformat = _need("nbformat", "course tools (jupyterlab)")
    nb = nbformat.read(path, as_version=4)
    nb.metadata.pop("widgets", None)
    cells = []
    for c in nb.cells:
        d = directives(c.source) if c.cell_type == "code" else {}
        if HIDE_CELL & d.keys(): continue
        if c.cell_type == "code":
            c.source = "\n".join(l for l in c.source.splitlines()
                                 if not ((m := DIRECTIVE.match(l)) and m[1] in DROP_LINE)).strip("\n")
            if not c.source and not c.outputs: continue
        elif c.cell_type == "markdown": c.source = tex_to_mathml(c.source)
        cells.append(c)
    nb.cells = cells
    return _exporter().from_notebook_node(nb)[0]


def _exporter():
    "nbconvert's HTML exporter (basic template: the cells only) without its two slow passes over trusted sources."
    nbconvert = _need("nbconvert", "course tools (jupyterlab)")
    from nbconvert.exporters.templateexporter import TemplateExporter
    from nbconvert.filters.widgetsdatatypefilter import WidgetsDataTypeFilter

    class Exporter(nbconvert.HTMLExporter):
        def from_notebook_node(self, nb, resources=None, **kw):
            # HTMLExporter's own method sets these two filters, then re-parses the whole page with BeautifulSoup only
            # to add alt texts and tabindex attributes: half of the build's time. The alt texts are added below.
            resources = self._init_resources(resources)
            self.register_filter("highlight_code", nbconvert.filters.Highlight2HTML(pygments_lexer="ipython3", parent=self))
            self.register_filter("filter_data_type", WidgetsDataTypeFilter(notebook_metadata=self._nb_metadata,
                                                                           parent=self, resources=resources))
            body, resources = TemplateExporter.from_notebook_node(self, nb, resources, **kw)
            return re.sub(r"<img (?![^>]*\balt=)", '<img alt="a figure from the cell above" ', body), resources

    exp = Exporter(template_name="basic", exclude_input_prompt=True, exclude_output_prompt=True)
    # the sources are the course's own: nbconvert's HTML sanitizer would spend a third of the build
    exp.register_filter("clean_html", lambda s: s.decode() if isinstance(s, bytes) else s)
    return exp


def markdown_body(path):
    md = _need("nbconvert.filters.markdown_mistune", "course tools (jupyterlab)")
    return md.markdown2html_mistune(tex_to_mathml(path.read_text()))


def table_pipes(body):
    "GitHub's and Jupyter's tables read `\\|` as a pipe even inside code (`#\\| slow`); mistune keeps the backslash."
    return re.sub(r"<td>.*?</td>", lambda m: m[0].replace("\\|", "|"), body, flags=re.S)


def title_of(path):
    "The page's title: the first '# ' heading of the source (markdown, or a notebook's first markdown cell)."
    text = path.read_text()
    if path.suffix == ".ipynb":
        import json
        text = "\n".join("".join(c["source"]) for c in json.loads(text)["cells"] if c["cell_type"] == "markdown")
    m = re.search(r"^#\s+(.+)$", text, re.M)
    if not m: raise SystemExit(f"build_site: {path.relative_to(ROOT)} has no '# ' title")
    return re.sub(r"[`*_]", "", m[1]).strip()


CSS = """
:root { --side: 17rem; --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --accent: #0969da; --code: #f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); }
nav.side { position: fixed; top: 0; bottom: 0; left: 0; width: var(--side); overflow-y: auto; padding: 1rem;
  border-right: 1px solid var(--line); background: #fafbfc; font-size: 14px; }
nav.side .brand { font-weight: 700; font-size: 17px; display: block; margin-bottom: .8rem; color: var(--fg); text-decoration: none; }
a.anchor-link { visibility: hidden; margin-left: .3rem; text-decoration: none; color: var(--muted); }
:is(h1, h2, h3, h4):hover a.anchor-link { visibility: visible; }
nav.side h2 { font-size: 12px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); margin: 1rem 0 .3rem; }
nav.side ul { list-style: none; margin: 0; padding: 0; }
nav.side li a { display: block; padding: .15rem .4rem; border-radius: 4px; color: var(--fg); text-decoration: none; }
nav.side li a:hover { background: #eef1f4; }
nav.side li a.current { background: #ddf4ff; color: var(--accent); font-weight: 600; }
nav.side li.nb a { padding-left: 1.2rem; font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 13px; }
main { margin-left: var(--side); padding: 1.5rem 2.5rem 4rem; max-width: calc(var(--side) + 62rem); }
a { color: var(--accent); }
[data-repo-file] { color: inherit; }
pre, code { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 13.5px; }
pre { background: var(--code); padding: .7rem .9rem; overflow-x: auto; border-radius: 6px; line-height: 1.4; }
:not(pre) > code { background: var(--code); padding: .1em .3em; border-radius: 4px; }
table { border-collapse: collapse; margin: 1rem 0; display: block; overflow-x: auto; }
th, td { border: 1px solid var(--line); padding: .3rem .6rem; text-align: left; vertical-align: top; }
img { max-width: 100%; height: auto; }
.output_png img { max-width: min(100%, 52rem); }
math[display="block"] { margin: .8rem 0; }
.cell { margin: .6rem 0; }
.input_area pre { border-left: 3px solid var(--line); }
.output_area pre { background: #fff; border: 1px solid var(--line); max-height: 32rem; }
.output_html { overflow-x: auto; }
.prompt { display: none; }
footer { margin-top: 3rem; color: var(--muted); font-size: 13px; }
@media (max-width: 800px) { nav.side { position: static; width: auto; border-right: 0; border-bottom: 1px solid var(--line); }
  main { margin-left: 0; padding: 1rem; } }
"""


def sidebar(order, titles, current):
    here = out_path(current).parent
    parts = [f'<a class="brand" href="{os.path.relpath("index.html", here)}">{SITE_TITLE}</a>']
    for section, srcs in order:
        if section: parts.append(f"<h2>{html.escape(section)}</h2>")
        items = []
        for s in srcs:
            href = os.path.relpath(out_path(s), here)
            cls = ' class="current"' if s == current else ""
            label = SHORT.get(s.resolve().relative_to(ROOT).as_posix()) or (s.stem if s.suffix == ".ipynb" else titles[s])
            if s.name == "README.md" and s.parent.name.startswith("L") and section: label = "Guide"
            kind = "nb" if s.suffix == ".ipynb" and s.stem != "index" else "page"
            items.append(f'<li class="{kind}"><a{cls} href="{html.escape(href)}">{html.escape(label)}</a></li>')
        parts.append("<ul>" + "".join(items) + "</ul>")
    return '<nav class="side">' + "".join(parts) + "</nav>"


def page(title, nav, body, css_href):
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)} — {SITE_TITLE}</title>"
            f'<link rel="stylesheet" href="{css_href}"></head>\n<body>{nav}<main>{body}'
            f"<footer>Rendered from the repository's notebooks and guides with their saved outputs.</footer>"
            f"</main></body></html>\n")


def build(out):
    "Write the site into `out` (emptied first). Returns the list of pages written (site-relative paths)."
    from pygments.formatters import HtmlFormatter
    _need("latex2mathml.converter", "docs extra")            # before anything is written
    order = reading_order()
    sources = [s for _, srcs in order for s in srcs]
    pages = dict.fromkeys(sources)          # sources, then the assets their links name (filled while rendering)
    titles = {s: title_of(s) for s in sources}
    if out.exists(): shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / "site.css").write_text(CSS + HtmlFormatter(style="default").get_style_defs(".highlight"))
    missing, written = [], []
    for s in sources:
        body = notebook_body(s) if s.suffix == ".ipynb" else markdown_body(s)
        body = rewrite_links(table_pipes(body), s, pages, missing)
        dst = out / out_path(s)
        dst.parent.mkdir(parents=True, exist_ok=True)
        css = os.path.relpath("site.css", out_path(s).parent)
        dst.write_text(page(titles[s], sidebar(order, titles, s), body, css))
        written.append(out_path(s))
    for p in pages:
        if p.suffix not in (".ipynb", ".md"):
            (out / out_path(p)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, out / out_path(p))
    (out / ".nojekyll").touch()
    return written, sorted(set(missing))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "_docs", help="output folder (default: _docs/)")
    ap.add_argument("--links", action="store_true", help="list the links to repository files that are not pages")
    args = ap.parse_args(argv)
    t0 = time.time()
    written, missing = build(args.out.resolve())
    print(f"build_site: {len(written)} pages in {args.out} in {time.time() - t0:.1f} s "
          f"(preview: python -m http.server -d {args.out} 8000)")
    if args.links and missing: print("links to files that are not pages:", *missing, sep="\n  ")


if __name__ == "__main__":
    main()
