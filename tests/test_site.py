"""The course website: `tools/build_site.py` builds every page, and headless Chromium loads each one.

For every page: it loads from disk without a console error or an uncaught exception, its <title> is the source's
first heading, every <img> decodes (naturalWidth > 0) and a notebook with saved figures shows them, every relative
link of the site points at a file the site has, and the sidebar lists every page. Debian's chromium, driven by
Playwright (as the UI tests of nbs/10a_api.ipynb do: `bash scripts/setup_browser.sh`).

The build and the browser are the slow tier (the build takes ~15 s on 2 cores, the browser ~20 s more):
    NANOCHAT_TEST_FLAGS=site python -m pytest tests/test_site.py -q        # or NANOCHAT_TEST_FLAGS=slow
The default tier checks the builder's rules in well under a second: the reading order, math, links.
"""
import importlib.util, json, os, re, time
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
FLAGS = os.environ.get("NANOCHAT_TEST_FLAGS", "").split()
CHROMIUM = "/usr/bin/chromium"
site_tier = pytest.mark.skipif(not {"slow", "site"} & set(FLAGS),
                               reason="site build + browser check: NANOCHAT_TEST_FLAGS=site (or slow) runs it")

spec = importlib.util.spec_from_file_location("build_site", ROOT / "tools" / "build_site.py")
bs = importlib.util.module_from_spec(spec); spec.loader.exec_module(bs)


def test_reading_order_has_every_notebook_once():
    "A new notebook must get a row of lessons/README.md's lesson table, or the site (and the reader) misses it."
    srcs = [s for _, srcs in bs.reading_order() for s in srcs]
    assert len(srcs) == len(set(srcs))
    assert srcs[0].name == "index.ipynb"
    assert {p for p in ROOT.glob("nbs/*.ipynb") if not p.name.startswith("_")} == {s for s in srcs if s.suffix == ".ipynb"}


def test_math_becomes_mathml_outside_code():
    pytest.importorskip("latex2mathml", reason="the site needs the docs extra: pip install -e '.[docs]'")
    out = bs.tex_to_mathml("a $x^2$ b\n$$\\sum_i x_i$$\n`$x$` and a run costs $100 or $1000.")
    assert out.count("<math") == 2 and 'display="block"' in out
    assert "`$x$`" in out and "$100 or $1000." in out          # code and prices stay as written


def test_links_point_at_pages(tmp_path):
    src = ROOT / "lessons" / "L10_serving" / "README.md"
    pages, missing = dict.fromkeys([src, ROOT / "nbs" / "10_serving.ipynb"]), []
    body = ('<a href="../../nbs/10_serving.ipynb#5">x</a> <img src="ui_phone.png"> <a href="https://example.org">e</a> '
            '<a href="../../scripts/chat_web.py">s</a> <code>nbs/10_serving.ipynb</code>')
    out = bs.rewrite_links(body, src, pages, missing)
    assert 'href="../../10_serving.html#5"' in out and 'src="ui_phone.png"' in out and "https://example.org" in out
    assert 'data-repo-file="../../scripts/chat_web.py"' in out and missing == ["../../scripts/chat_web.py"]
    assert '<a href="../../10_serving.html"><code>nbs/10_serving.ipynb</code></a>' in out
    assert src.parent / "ui_phone.png" in pages                 # the image is copied with the page
    assert bs.table_pipes(r"<td><code>#\| slow</code></td><pre>a\|b</pre>") == r"<td><code>#| slow</code></td><pre>a\|b</pre>"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    pytest.importorskip("latex2mathml", reason="the site needs the docs extra: pip install -e '.[docs]'")
    out = tmp_path_factory.mktemp("site") / "_docs"
    t0 = time.time()
    pages, _ = bs.build(out)
    print(f"\nsite: {len(pages)} pages built in {time.time() - t0:.1f} s")
    return out, pages


def _sources():
    return [s for _, srcs in bs.reading_order() for s in srcs]


@site_tier
def test_every_source_is_a_page(site):
    out, pages = site
    srcs = _sources()
    assert sorted(map(str, pages)) == sorted(str(bs.out_path(s)) for s in srcs)
    assert {p.name for p in ROOT.glob("nbs/*.ipynb") if not p.name.startswith("_")} == \
        {s.name for s in srcs if s.suffix == ".ipynb"}, "a notebook of nbs/ is missing from the site"
    guides = {*ROOT.glob("lessons/*/README.md"), ROOT / "lessons" / "README.md"}
    assert guides <= set(srcs), "a lesson guide is missing from the site"


@site_tier
def test_links_resolve(site):
    out, pages = site
    bad = []
    for p in pages:
        for url in re.findall(r'\b(?:href|src)="([^"]+)"', (out / p).read_text()):
            if re.match(r"^([a-z][a-z0-9+.-]*:|#)", url, re.I): continue
            if not ((out / p).parent / url.partition("#")[0]).resolve().exists(): bad.append(f"{p}: {url}")
    assert not bad, "links to files the site does not have:\n" + "\n".join(bad)


def _has_figures(src):
    if src.suffix != ".ipynb": return "![" in src.read_text()
    nb = json.loads(src.read_text())
    return any(k.startswith("image/") for c in nb["cells"] for o in c.get("outputs", []) for k in o.get("data", {}))


@site_tier
def test_pages_in_chromium(site):
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright comes with the test extra: pip install -e '.[test]'")
    if not Path(CHROMIUM).exists(): pytest.skip(f"{CHROMIUM} not found: run `bash scripts/setup_browser.sh`")
    out, pages = site
    titles = {bs.out_path(s): bs.title_of(s) for s in _sources()}
    problems, n_img = [], 0
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        for p in pages:
            errors.clear()
            page.goto((out / p).as_uri(), wait_until="load")
            where = str(p)
            if errors: problems.append(f"{where}: console errors {errors[:3]}")
            if page.title() != f"{titles[p]} — {bs.SITE_TITLE}": problems.append(f"{where}: title {page.title()!r}")
            if page.locator("main h1").count() < 1: problems.append(f"{where}: no <h1>")
            if page.locator("nav.side a").count() < len(pages): problems.append(f"{where}: the sidebar misses pages")
            imgs = page.evaluate("Array.from(document.images).map(i => [i.getAttribute('src').slice(0, 50), i.naturalWidth])")
            problems += [f"{where}: image {src!r} does not load" for src, w in imgs if not w > 0]
            src = next(s for s in _sources() if bs.out_path(s) == p)
            if _has_figures(src) and not imgs: problems.append(f"{where}: its figures are missing")
            n_img += len(imgs)
        math = page.goto((out / "04_muon.html").as_uri()) and page.locator("math").count()
        browser.close()
    assert not problems, "\n".join(problems)
    assert n_img > 20 and math > 10, (n_img, math)
