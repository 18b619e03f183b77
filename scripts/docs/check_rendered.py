"""Open the built docs in headless Chromium, offline, and fail where TeX is left raw.

    python scripts/docs/check_rendered.py SITE_DIR [--chromium PATH] [--jobs N] [PAGE ...]

Serves SITE_DIR on 127.0.0.1 (a random port), loads every page (or the given ones, paths
relative to SITE_DIR) with `chromium --headless --dump-dom` after its scripts ran, with every
host but 127.0.0.1 unresolvable, so a page that needs a CDN for its math fails here. In the
DOM as the reader sees it (code, scripts and MathJax's own output left out) it looks for
`\\(`, `\\)`, `\\[`, `\\]` or `$$` (TeX that nothing typeset, the table of contents included)
for MathJax's error nodes (TeX that MathJax could not parse), and for scripts or stylesheets
(web fonts included) loaded from another host. Exit 0 when every page is
clean, 1 otherwise (one line per finding), 2 when Chromium cannot be found.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path

# A script or stylesheet (fonts included) fetched from another host at view time.
EXTERNAL = re.compile(r"(https?:)?//(?!127\.0\.0\.1[:/]|localhost[:/])", re.IGNORECASE)
RAW_TEX = re.compile(r"\\\(|\\\)|\\\[|\\\]|\$\$")
# Elements whose text a reader does not see as prose: code is allowed to show TeX.
SKIP = {"script", "style", "noscript", "template", "code", "pre", "kbd", "samp",
        "mjx-assistive-mml", "svg"}
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


class _Text(HTMLParser):
    """Visible text of a DOM dump, MathJax's rendered and error nodes counted."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.skipping = 0
        self.text: list[str] = []
        self.rendered = 0
        self.errors: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "mjx-container":
            self.rendered += 1
        if tag == "mjx-merror":
            self.errors.append(dict(attrs).get("data-mjx-error") or "TeX error")
        url = dict(attrs).get("src" if tag == "script" else "href") or ""
        if tag in ("script", "link") and EXTERNAL.match(url):
            self.external.append(url)
        if tag in VOID:
            return
        self.stack.append(tag)
        if tag in SKIP:
            self.skipping += 1

    def handle_endtag(self, tag):
        if tag not in self.stack:
            return
        while self.stack:
            top = self.stack.pop()
            if top in SKIP:
                self.skipping -= 1
            if top == tag:
                break

    def handle_data(self, data):
        if not self.skipping:
            self.text.append(data)


def findings(dom: str) -> tuple[list[str], int]:
    """Problems in one page's rendered DOM (raw TeX with context, MathJax errors, scripts or
    stylesheets from other hosts) and how many formulas MathJax rendered."""
    parser = _Text()
    parser.feed(dom)
    parser.close()
    text = " ".join(" ".join(parser.text).split())
    problems = []
    for m in RAW_TEX.finditer(text):
        lo, hi = max(0, m.start() - 40), min(len(text), m.end() + 40)
        problems.append(f"raw TeX {m.group()!r} visible: ...{text[lo:hi]}...")
    problems += [f"MathJax error: {e}" for e in parser.errors]
    problems += [f"loads {url} from the network (the site must work offline)"
                 for url in parser.external]
    return problems, parser.rendered


def find_chromium(explicit: str | None = None) -> str | None:
    """The Chromium executable: `explicit`, `$CHROMIUM`, or the first of the usual names."""
    for name in (explicit, os.environ.get("CHROMIUM"), *CANDIDATES):
        if name and (path := shutil.which(name)):
            return path
    return None


def dump_dom(chromium: str, url: str, budget_ms: int = 20000) -> str:
    """The DOM of `url` after its scripts ran (virtual time), with only 127.0.0.1 reachable."""
    cmd = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-first-run", "--disable-extensions", "--disable-background-networking",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        f"--virtual-time-budget={budget_ms}", "--dump-dom", url,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0 or "<html" not in done.stdout:
        raise RuntimeError(f"chromium failed on {url} (exit {done.returncode}): "
                           f"{done.stderr.strip().splitlines()[-1:] or ''}")
    return done.stdout


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # no request log on stderr
        pass


def serve(root: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    """A static server for `root` on 127.0.0.1 in a daemon thread, and its base URL."""
    handler = functools.partial(_Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("site", type=Path)
    ap.add_argument("pages", nargs="*", help="pages relative to SITE (default: every *.html)")
    ap.add_argument("--chromium", default=None)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args(argv)
    chromium = find_chromium(args.chromium)
    if chromium is None:
        print("check_rendered: Chromium not found (apt-get install chromium)", file=sys.stderr)
        return 2
    site = args.site.resolve()
    pages = args.pages or sorted(
        str(p.relative_to(site)) for p in site.rglob("*.html")
        if "assets" not in p.relative_to(site).parts
    )
    # A page whose HTML holds no TeX delimiter at all cannot show raw TeX: no browser needed.
    without_tex = [p for p in pages if not RAW_TEX.search((site / p).read_text(errors="replace"))]
    pages = [p for p in pages if p not in without_tex]
    server, base = serve(site)
    try:
        with ThreadPoolExecutor(max(1, args.jobs)) as pool:
            doms = list(pool.map(lambda p: dump_dom(chromium, base + p), pages))
    finally:
        server.shutdown()
    bad, formulas = 0, 0
    for page, dom in zip(pages, doms):
        problems, rendered = findings(dom)
        formulas += rendered
        for problem in problems[:5]:
            print(f"{page}: {problem}")
        if len(problems) > 5:
            print(f"{page}: ... and {len(problems) - 5} more")
        bad += bool(problems)
    print(f"check_rendered: {len(pages)} pages with TeX in Chromium offline ({len(without_tex)} "
          f"without TeX skipped), {formulas} formulas typeset, {bad} page(s) with raw TeX or "
          "TeX errors")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
