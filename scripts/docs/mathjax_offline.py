"""MkDocs hook: serve MathJax from the built site itself, so `site/` renders math offline.

MathJax 3 comes from the PyPI package `django-static-mathjax` (MathJax's own release files
under `mathjax/static/mathjax/`, Apache-2.0, no dependencies; the `docs` extra installs it).
After each build this hook copies the CommonHTML component `es5/tex-mml-chtml.js` and the
folders it loads on demand (TeX extensions, fonts, menu, accessibility, speech) into
`<site>/assets/mathjax/`; `mkdocs.yml` lists `assets/mathjax/tex-mml-chtml.js` after the
configuration script `javascripts/mathjax.js`. No page loads anything from a CDN.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from mkdocs.exceptions import PluginError

TARGET = "assets/mathjax"
# The one combined component the pages load, and what it fetches lazily (relative to es5/).
FILES = ("tex-mml-chtml.js",)
FOLDERS = ("input", "output/chtml", "ui", "a11y", "sre", "adaptors")


def mathjax_root() -> Path:
    """The `es5/` folder of the installed MathJax; `PluginError` naming the extra if absent."""
    try:
        import mathjax  # the import name of django-static-mathjax
    except ModuleNotFoundError:
        mathjax = None
    root = None if mathjax is None else Path(mathjax.__file__).parent / "static/mathjax/es5"
    if root is None or not (root / FILES[0]).is_file():
        raise PluginError(
            "offline MathJax: the package 'django-static-mathjax' is not installed "
            "(pip install 'manifold-align[docs]')"
        )
    return root


def on_config(config):
    mathjax_root()  # fail before building the pages, not after
    return config


def on_post_build(config) -> None:
    root = mathjax_root()
    out = Path(config["site_dir"]) / TARGET
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for name in FILES:
        shutil.copy2(root / name, out / name)
    for folder in FOLDERS:
        shutil.copytree(root / folder, out / folder)
    shutil.copy2(root.parent / "LICENSE", out / "LICENSE")
