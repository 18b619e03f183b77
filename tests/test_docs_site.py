"""The docs site's tooling: offline MathJax, the raw-TeX browser check, the Sphinx-role check,
a config that builds from any directory, and the packaging the docs rely on."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts/docs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


check_rendered = _load("check_rendered")
sphinx_roles = _load("sphinx_roles")
mathjax_offline = _load("mathjax_offline")


# --- the rendered-text check, on DOM dumps ---------------------------------------------------

def test_raw_tex_in_prose_and_table_of_contents_is_found():
    dom = (
        '<html><body><nav class="md-nav"><a class="md-nav__link"><span class="md-ellipsis">'
        "Sphere \\(S^{d-1}\\)</span></a></nav>"
        "<p>a gap of \\[ g = 1 \\] and $$x$$</p></body></html>"
    )
    problems, rendered = check_rendered.findings(dom)
    found = {p.split("'")[1] for p in problems}
    assert found == {"\\\\(", "\\\\)", "\\\\[", "\\\\]", "$$"}
    assert any("Sphere" in p for p in problems)  # the TOC entry itself
    assert rendered == 0


def test_typeset_math_and_code_pass():
    dom = (
        "<html><body><p>gap <mjx-container><mjx-math></mjx-math>"
        "<mjx-assistive-mml><math><mi>g</mi></math></mjx-assistive-mml></mjx-container></p>"
        "<pre><code>$$ \\(x\\) $$</code></pre><p>write <code>\\(x\\)</code></p>"
        "<script>var s = '\\\\(';</script></body></html>"
    )
    assert check_rendered.findings(dom) == ([], 1)


def test_scripts_and_fonts_from_other_hosts_are_reported():
    dom = ('<html><head><link rel="stylesheet" href="https://fonts.googleapis.com/css?f=R">'
           '<script src="//cdn.example.org/mathjax.js"></script>'
           '<script src="../assets/mathjax/tex-mml-chtml.js"></script>'
           '<link rel="stylesheet" href="http://127.0.0.1:8000/a.css"></head>'
           '<body><a href="https://example.org">a link is fine</a></body></html>')
    problems, _ = check_rendered.findings(dom)
    assert [p.split()[1] for p in problems] == ["https://fonts.googleapis.com/css?f=R",
                                               "//cdn.example.org/mathjax.js"]


def test_mathjax_error_nodes_are_reported():
    dom = '<html><body><mjx-merror data-mjx-error="Undefined control sequence \\foo">'
    dom += "</mjx-merror></body></html>"
    problems, _ = check_rendered.findings(dom)
    assert problems == ["MathJax error: Undefined control sequence \\foo"]


# --- the same check in a real browser ------------------------------------------------------

def _chromium():
    path = check_rendered.find_chromium()
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("Chromium is required in CI (scripts/docs/chromium.sh installs it)")
        pytest.skip("Chromium not installed (apt-get install chromium)")
    return path


@pytest.mark.slow
def test_browser_check_fails_without_offline_mathjax_and_passes_with_it(tmp_path):
    chromium = _chromium()
    page = (
        "<!doctype html><html><head><script>window.MathJax = {{tex: {{inlineMath: "
        "[['\\\\(', '\\\\)']]}}}};</script><script src='{src}'></script></head>"
        "<body><nav><a class='md-nav__link'>Oblique \\(\\mathrm{{OB}}(k, d)\\)</a></nav>"
        "<p>similarity in \\([-k, k]\\)</p></body></html>"
    )
    # Without the fix: MathJax from a CDN, unreachable in the check.
    (tmp_path / "cdn.html").write_text(
        page.format(src="https://cdn.example.org/mathjax@3/es5/tex-mml-chtml.js"))
    # With it: MathJax copied into the site by the hook.
    mathjax_offline.on_post_build({"site_dir": str(tmp_path)})
    (tmp_path / "offline.html").write_text(page.format(src="assets/mathjax/tex-mml-chtml.js"))
    server, base = check_rendered.serve(tmp_path)
    try:
        cdn = check_rendered.findings(check_rendered.dump_dom(chromium, base + "cdn.html"))
        offline = check_rendered.findings(
            check_rendered.dump_dom(chromium, base + "offline.html"))
    finally:
        server.shutdown()
    assert cdn[1] == 0 and any("OB" in p for p in cdn[0])
    assert offline == ([], 2)


# --- offline MathJax assets ----------------------------------------------------------------

def test_mathjax_hook_copies_mathjax_into_the_site(tmp_path):
    mathjax_offline.on_post_build({"site_dir": str(tmp_path)})
    out = tmp_path / "assets/mathjax"
    assert (out / "tex-mml-chtml.js").stat().st_size > 100_000
    assert list((out / "output/chtml/fonts/woff-v2").glob("MathJax_Main-Regular.woff"))
    assert "Apache License" in (out / "LICENSE").read_text()


def test_mkdocs_loads_mathjax_from_the_site_never_a_cdn():
    text = (ROOT / "mkdocs.yml").read_text()
    assert "assets/mathjax/tex-mml-chtml.js" in text
    assert "https://" not in text.split("extra_javascript:")[1]


# --- leaked Sphinx roles -------------------------------------------------------------------

def test_leaked_sphinx_roles_are_found_in_rendered_html():
    html = ("<p>see :meth:<code>scale_as</code> and :py:class:<code>~a.B</code>, "
            "a ratio 1:2:<code>x</code></p><p><code>:func:`f`</code> shown as code</p>")
    assert sphinx_roles.leaked_roles(html) == [":meth:`scale_as`", ":py:class:`~a.B`"]


def test_a_leaked_role_fails_the_build_even_when_warnings_are_hidden():
    from types import SimpleNamespace

    from mkdocs.exceptions import PluginError

    page = SimpleNamespace(file=SimpleNamespace(src_uri="api.md"))
    sphinx_roles.on_pre_build({})
    sphinx_roles.on_page_content("<p>ok</p>", page, {}, None)
    sphinx_roles.on_post_build({})  # a clean build passes
    sphinx_roles.on_page_content("<p>:class:<code>X</code></p>", page, {}, None)
    with pytest.raises(PluginError, match=r"1 Sphinx roles shown as text in api.md \(1\)"):
        sphinx_roles.on_post_build({})
    sphinx_roles.on_pre_build({})  # the next build (mkdocs serve) starts clean
    sphinx_roles.on_post_build({})


# --- mkdocs.yml works from any directory -----------------------------------------------------

def test_config_paths_are_relative_to_the_config_file(tmp_path, monkeypatch):
    from mkdocs.config import load_config

    monkeypatch.chdir(tmp_path)
    config = load_config(str(ROOT / "mkdocs.yml"))
    snippets = config["mdx_configs"]["pymdownx.snippets"]["base_path"]
    assert Path(str(snippets)).resolve() == ROOT
    assert Path(config["docs_dir"]).resolve() == ROOT / "docs"
    hooks = [Path(h) for h in config["hooks"]]
    assert hooks and all((ROOT / h).is_file() or h.is_file() for h in hooks)


# --- packaging ---------------------------------------------------------------------------

def test_license_file_urls_and_extras():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    assert "Apache License" in (ROOT / "LICENSE").read_text()[:200]
    assert "Version 2.0" in (ROOT / "LICENSE").read_text()[:200]
    assert {"Documentation", "Source", "Issues"} <= set(project["urls"])
    extras = project["optional-dependencies"]
    assert any(d.startswith("django-static-mathjax") for d in extras["docs"])
    assert {"manifold-align[train]", "manifold-align[peers]"} <= set(extras["examples"])
    assert "manifold-align[docs]" in extras["dev"]
