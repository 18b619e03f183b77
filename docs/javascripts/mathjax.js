// MathJax 3 configuration; MathJax itself is served from the site (assets/mathjax/, copied by
// scripts/docs/mathjax_offline.py), never from a CDN. arithmatex wraps page math in
// class="arithmatex"; headings' math reaches the table of contents as bare \( \) text inside
// the navigation links, so those are typeset too.
window.MathJax = {
  tex: { inlineMath: [["\\(", "\\)"]], displayMath: [["\\[", "\\]"]], processEscapes: true, processEnvironments: true },
  options: { ignoreHtmlClass: ".*|", processHtmlClass: "arithmatex|md-nav__link|md-ellipsis" }
};
document$.subscribe(() => { MathJax.typesetPromise(); });
