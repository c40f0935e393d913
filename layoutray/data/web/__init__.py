"""Real web pages as training data: render in headless Chromium, label the DOM, write rows.

    from layoutray.data.web import from_html
    report = from_html(["realweb/pages"], "web_sections")   # `layoutray data from-html`

Modules: `browser` (Playwright + the system Chromium, the in-page DOM reader), `tree` (one
section's DOM with derived facts), `elements` (the element labelling rules, a table),
`sections` (the section type scorers, a table), `ingest` (pages -> rows -> dataset) and `score`
(the rules measured against `data-layout` ground truth). Playwright is imported only when a page
is rendered, so importing this package costs nothing.
"""

from layoutray.data.web.ingest import Options, collect_sources, from_html, render_sources

__all__ = ["Options", "collect_sources", "from_html", "render_sources"]
