"""The documentation site builds, and a real browser shows every page as a reader would see it.

The site is built once (the command README.md gives, into a temporary folder),
which executes every tutorial. Then headless Chromium opens each tutorial page,
README's and the results page, runs their scripts, and dumps the DOM. In it:

- the maths was typeset by the local MathJax: every maths element holds a
  ``mjx-container``, and no raw ``$$``, ``\\(`` or ``\\[`` is left in the text;
- every ``<img>`` was decoded by the browser (a one-line script added to a copy
  of the page records ``naturalWidth`` on load), and a page shows at least as
  many figures as its tutorial saves;
- no cell output holds a traceback.

Skipped, with the reason, where Chromium or the ``docs`` extra is missing; set
``MINIGRAD_REQUIRE_BROWSER_TEST=1`` (``.ci/run`` does) to make that a failure.
"""

from __future__ import annotations

import html.parser
import importlib.util
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TUTORIALS = sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.py"))
PAGES = [f"tutorials/{p.stem}.html" for p in TUTORIALS] + ["README.html", "docs/results.html"]
DOCS_MODULES = ("sphinx", "myst_nb", "jupytext", "ipykernel", "sphinx-mathjax-offline")
IMAGE_PROBE = (
    "<script>window.addEventListener('load', () => document.querySelectorAll('img').forEach("
    "img => img.setAttribute('data-natural-width', img.complete ? img.naturalWidth : -1)));</script>"
)

pytestmark = [pytest.mark.browser, pytest.mark.backends("numpy")]


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    missing = [name for name in DOCS_MODULES if importlib.util.find_spec(name) is None]
    reason = None
    if found is None:
        reason = "Chromium is not installed (Debian: apt-get install chromium)"
    elif missing:
        reason = f"the docs extra is not installed (missing {', '.join(missing)}): pip install -e '.[docs]'"
    if reason is not None:
        if os.environ.get("MINIGRAD_REQUIRE_BROWSER_TEST") == "1":
            pytest.fail(f"MINIGRAD_REQUIRE_BROWSER_TEST=1 but {reason}")
        pytest.skip(reason)
    return found


@pytest.fixture(scope="module")
def chromium() -> str:
    return _chromium()


@pytest.fixture(scope="module")
def site(chromium, tmp_path_factory) -> Path:
    """The site, built by README's command into a temporary folder (executing every tutorial)."""
    build = tmp_path_factory.mktemp("site")
    out = build / "html"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MINIGRAD_TUTORIAL_OUT": str(build / "tutorial-output")}
    command = [sys.executable, "-m", "sphinx", "-q", "-c", "docs", ".", str(out), "-d", str(build / "doctrees")]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, f"the site build failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    assert (out / "index.html").is_file()
    return out


class _Page(html.parser.HTMLParser):
    """Visible text, images, maths and error outputs of a dumped DOM (Chromium serializes it well formed)."""

    HIDDEN = frozenset({"script", "style", "mjx-container", "pre", "code", "svg"})
    VOID = frozenset({"img", "br", "hr", "meta", "link", "input", "source", "wbr", "col", "area", "base", "embed", "track"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.images: list[dict[str, str | None]] = []
        self.math = 0  # elements Sphinx marked as maths
        self.typeset = 0  # of those, the ones that hold MathJax output
        self.tracebacks = 0  # cell outputs MyST-NB marked as an error
        self._open: list[list] = []  # [tag, None | False | True]: not maths / maths not yet typeset / typeset

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        classes = (attributes.get("class") or "").split()
        if tag == "img":
            self.images.append(attributes)
        if "traceback" in classes:
            self.tracebacks += 1
        if tag in self.VOID:
            return
        if tag == "mjx-container":
            inner = next((entry for entry in reversed(self._open) if entry[1] is not None), None)
            if inner is not None and inner[1] is False:
                inner[1] = True
                self.typeset += 1
        if "math" in classes:
            self.math += 1
        self._open.append([tag, False if "math" in classes else None])

    def handle_endtag(self, tag):
        if all(entry[0] != tag for entry in self._open):
            return
        while self._open.pop()[0] != tag:
            pass

    def handle_data(self, data):
        if not any(entry[0] in self.HIDDEN for entry in self._open):
            self.text.append(data)


def _dump_dom(chromium: str, page: Path) -> str:
    """The page's DOM after its scripts ran, from a copy that records how each image decoded."""
    probe = page.with_name(page.stem + ".probe.html")
    source = page.read_text(encoding="utf-8")
    assert "</body>" in source
    probe.write_text(source.replace("</body>", IMAGE_PROBE + "</body>", 1), encoding="utf-8")
    command = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--virtual-time-budget=20000",  # let MathJax load and typeset before the dump
        "--dump-dom",
        probe.as_uri(),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180)
    probe.unlink()
    assert result.returncode == 0 and "<html" in result.stdout, f"chromium failed on {page.name}:\n{result.stderr[-3000:]}"
    return result.stdout


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", f"{path.name} is not a PNG file"
    return struct.unpack(">II", data[16:24])


def test_entry_page_leads_to_the_readme(site):
    index = (site / "index.html").read_text()
    assert 'url=README.html"' in index
    assert (site / "README.html").is_file()


def test_no_page_loads_a_script_from_the_network(site):
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > len(PAGES)
    for page in pages:
        remote = re.findall(r"<script[^>]*\bsrc=[\"']((?:https?:)?//[^\"']+)", page.read_text(encoding="utf-8"))
        assert not remote, f"{page.relative_to(site)} loads scripts from the network: {remote}"
    assert (site / "_static" / "mathjax" / "tex-svg.js").is_file()


@pytest.mark.parametrize("name", PAGES)
def test_page_renders_in_chromium(site, chromium, name):
    page = site / name
    assert page.is_file(), f"{name} was not built"
    dom = _dump_dom(chromium, page)
    parsed = _Page()
    parsed.feed(dom)
    text = " ".join(parsed.text)

    # maths: every element Sphinx marked as maths was typeset, and no TeX delimiter is left in the text
    if name.startswith("tutorials/"):
        assert parsed.math > 0, f"{name}: no maths found on a tutorial page"
    assert parsed.typeset == parsed.math, (
        f"{name}: {parsed.math - parsed.typeset} of {parsed.math} maths elements not typeset"
    )
    for raw in ("$$", "\\(", "\\[", "\\frac"):
        at = text.find(raw)
        assert at < 0, f"{name}: raw TeX {raw!r} left in the visible text: ...{text[max(at - 80, 0) : at + 80]}..."

    # figures: each <img> is a PNG file of the site, decoded by the browser; a tutorial shows what it saves
    for image in parsed.images:
        src = image.get("src") or ""
        assert not re.match(r"(?:https?:)?//", src), f"{name}: image from the network: {src}"
        width, height = _png_size((page.parent / src).resolve())
        assert width > 0 and height > 0
        assert int(image.get("data-natural-width") or 0) == width, f"{name}: the browser did not load {src}"
    if name.startswith("tutorials/"):
        saved = (ROOT / "tutorials" / (Path(name).stem + ".py")).read_text().count(".savefig(")
        assert len(parsed.images) >= saved, f"{name}: shows {len(parsed.images)} figures, the tutorial saves {saved}"
    else:
        expected = len(re.findall(r"!\[[^\]]*\]\(", (ROOT / name.replace(".html", ".md")).read_text()))
        assert len(parsed.images) >= expected, f"{name}: shows {len(parsed.images)} of {expected} images"

    # outputs: no cell raised
    assert parsed.tracebacks == 0, f"{name}: a cell output is an error"
    assert "Traceback (most recent call last)" not in dom, f"{name}: a cell output holds a traceback"
