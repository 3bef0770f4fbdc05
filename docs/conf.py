"""Sphinx configuration of minigrad's documentation site.

Build it from the repository root (README.md gives the same line)::

    python -m sphinx -c docs . docs/_build/html

The source folder is the repository itself, restricted by ``include_patterns`` to
the pages of the site, so that README.md, docs/results.md and the tutorials keep
the relative links that work on a code host and in a clone.

Why these tools:

- **Sphinx with MyST-NB.** The tutorials are jupytext "percent" scripts, with
  their maths in Markdown comments. MyST-NB reads them through jupytext,
  executes every one in a fresh Jupyter kernel during the build, and renders the
  Markdown cells (``$...$`` and ``$$...$$`` maths), the code, the printed output
  and the figures. A tutorial that raises fails the build
  (``nb_execution_raise_on_error``), so the site never shows a broken page. The
  same parser (MyST) renders README.md and docs/results.md.
- **autodoc and autosummary** (part of Sphinx) write the API reference from the
  docstrings, which use reST roles (``:class:``, ``:func:``); autosummary walks
  the package recursively, so a new or moved module needs no change here.
- **sphinx-mathjax-offline** ships MathJax 3 in its wheel and copies it into
  ``_static/``: maths renders without a CDN, and the built site works offline.
- **furo**: a maintained theme whose assets are all in its wheel.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TUTORIALS = sorted(p.stem for p in (ROOT / "tutorials").glob("[0-9][0-9]_*.py"))

project = "minigrad"
author = "the minigrad authors"
copyright = "the minigrad authors"  # noqa: A001 (a Sphinx setting)

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",  # the docstrings' "Args:" and "Returns:" sections
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",
]

root_doc = "README"
include_patterns = [
    "README.md",
    "docs/results.md",
    "docs/api.md",
    "docs/api/**",
    "benchmarks/README.md",
    "tutorials/[0-9][0-9]_*.py",
]
# Folders the build never needs to walk (include_patterns picks the pages, these only save time).
exclude_patterns = [".*", "docs/_build", "build", "dist", "runs", "minigrad", "tests", "tutorials/output"]
templates_path = [str(ROOT / "docs" / "_templates")]  # absolute: autosummary reads it relative to the source folder

# The tutorials: jupytext percent scripts, executed on every build.
nb_custom_formats = {".py": ["jupytext.reads", {"fmt": "py:percent"}]}
nb_execution_mode = "force"
nb_execution_raise_on_error = True
nb_execution_show_tb = True  # the failing cell's traceback goes to the build log
nb_execution_timeout = 900  # seconds per cell; tutorial 05 trains two small CNNs in one cell
nb_merge_streams = True

myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3  # README's in-page links (#training, ...)

autosummary_generate = True
autosummary_mock_imports = ["minigrad.__main__"]  # importing it would run the command line
autodoc_default_options = {"members": True, "show-inheritance": True, "ignore-module-all": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"

html_theme = "furo"
html_title = "minigrad"
html_static_path: list[str] = []
html_additional_pages = {"index": "redirect.html"}  # index.html leads to the README page
html_show_sourcelink = False
mathjax_path = "mathjax/tex-svg.js"  # SVG output: no web fonts to load, so file:// pages render too


def _prepare_kernels(app) -> None:
    """Set the environment the tutorial kernels inherit, before any kernel starts."""
    os.environ.setdefault("MINIGRAD_TUTORIAL_OUT", str(Path(app.outdir).parent / "tutorial-output"))
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small models: two BLAS threads only wait for each other
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"  # figures become cell outputs


def _add_navigation(app, docname: str, source: list[str]) -> None:
    """Give the site its table of contents: README.md itself stays plain Markdown for code hosts."""
    if docname != root_doc:
        return
    entries = "\n".join(f"tutorials/{name}" for name in TUTORIALS)
    source[0] += (
        f"\n\n```{{toctree}}\n:hidden:\n:caption: Tutorials\n\n{entries}\n```\n"
        "\n```{toctree}\n:hidden:\n:caption: Reference\n\ndocs/results\nbenchmarks/README\ndocs/api\n```\n"
    )


def setup(app) -> None:
    app.config.mathjax_path = mathjax_path  # sphinx-mathjax-offline sets its CHTML build; keep the SVG one
    app.connect("builder-inited", _prepare_kernels)
    app.connect("source-read", _add_navigation)
