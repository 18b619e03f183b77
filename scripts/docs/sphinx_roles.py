"""MkDocs hook: a Sphinx role left in a docstring or page fails the build.

mkdocstrings renders Google-style docstrings as Markdown, so `:meth:`x`` reaches the reader
as the text ":meth:" before `x`. Every rendered page (the API reference included) is scanned
for a role followed by inline code; each one is a warning naming the page and the role, and
the build then fails with an error counting them (so `mkdocs build -q`, which hides warnings
from `--strict` as well, fails too). Write `name` in backticks,
or the autorefs link [name][manifold_align.module.name] (see docs/design.md, Conventions).
A role shown inside code (as here) is not rendered as a role and is not flagged.
"""

from __future__ import annotations

import html
import logging
import re

from mkdocs.exceptions import PluginError

log = logging.getLogger("mkdocs.hooks.sphinx_roles")

# `:role:` or `:py:role:` right before inline code, as Python-Markdown renders `:role:`x``.
LEAKED_ROLE = re.compile(r":((?:py:)?[a-z]+):<code>(.*?)</code>")
ROLES = {"meth", "class", "func", "attr", "mod", "data", "exc", "obj", "ref", "const", "term",
         "doc", "any", "envvar", "py:meth", "py:class", "py:func", "py:attr", "py:mod",
         "py:data", "py:exc", "py:obj", "py:const"}


def leaked_roles(page_html: str) -> list[str]:
    """Every Sphinx role rendered as text in `page_html`, as `:role:`target``."""
    return [f":{role}:`{html.unescape(target)}`"
            for role, target in LEAKED_ROLE.findall(page_html) if role in ROLES]


_found: dict[str, int] = {}


def on_pre_build(config):
    _found.clear()


def on_page_content(html_text, page, config, files):
    leaks = leaked_roles(html_text)
    if leaks:
        _found[page.file.src_uri] = len(leaks)
    for leak in leaks[:10]:
        log.warning("%s: Sphinx role %s shown as text; write `name` or "
                    "[name][manifold_align.module.name]", page.file.src_uri, leak)
    if len(leaks) > 10:
        log.warning("%s: ... and %d more Sphinx roles", page.file.src_uri, len(leaks) - 10)
    return html_text


def on_post_build(config):
    if _found:
        pages = ", ".join(f"{page} ({n})" for page, n in sorted(_found.items()))
        raise PluginError(f"{sum(_found.values())} Sphinx roles shown as text in {pages}; "
                          "write `name` or [name][manifold_align.module.name]")
