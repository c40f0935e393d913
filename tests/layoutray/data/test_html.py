"""`layoutray data from-html`: the labelling rules on hand-built DOM trees, then real pages in the
real browser (Debian's Chromium through Playwright): rows, skips, bad input, and the project's own
test pages scored against their data-layout ground truth."""

import functools
import http.server
import io
import socket
import threading
from pathlib import Path

import pytest
from PIL import Image

from layoutray.config import ConfigError
from layoutray.data import dataset
from layoutray.data.validate import validate_dataset
from layoutray.data.web import browser, elements, sections
from layoutray.data.web.ingest import Options, check_widths, collect_sources, from_html, section_result
from layoutray.data.web.tree import Tree, class_tokens, parse_color

REPO = Path(__file__).resolve().parents[3]
PAGES = REPO / "realweb" / "pages"


# ---------------------------------------------------------------------------- hand-built trees


def tree(*specs, page_bg="rgb(255, 255, 255)"):
    """specs: (parent index, tag, box, extra features); node 0 is the section root."""
    nodes = []
    for parent, tag, box, extra in specs:
        n = {"p": parent, "tag": tag, "box": list(box), "cls": "", "vis": True, "fs": 16.0, "fw": 400,
             "bg": "rgba(0, 0, 0, 0)", "own": "", "text": "", "tlen": 0}
        n.update(extra)
        if n["own"] and not n["text"]:
            n["text"], n["tlen"] = n["own"], len(n["own"])
        nodes.append(n)
    return Tree(nodes, page_bg=page_bg)


ROOT = (-1, "section", (0, 0, 1440, 600), {})


def kinds(t, honour=True):
    return [(t.nodes[e.node]["tag"], e.type) for e in elements.label_tree(t, honour)]


def test_colours_and_class_tokens():
    assert parse_color("rgba(0, 0, 0, 0)") is None and parse_color("transparent") is None
    assert parse_color("rgb(10, 20, 30)") == (10, 20, 30, 1.0)
    assert parse_color("oklch(0.5 0.1 200)")[3] == 1.0  # unknown form: an opaque colour
    assert class_tokens({"cls": "btn feature-icon card__title"}) >= {"btn", "feature-icon", "feature", "icon",
                                                                      "card__title", "card", "title"}


def test_tags_classes_and_looks_each_decide_a_type():
    t = tree(ROOT,
             (0, "h2", (100, 40, 400, 40), {"own": "Plans", "fs": 32}),
             (0, "a", (100, 100, 120, 44), {"own": "Buy now", "href": True, "cls": "btn btn-primary"}),
             (0, "a", (240, 100, 120, 44), {"own": "Start", "href": True, "bg": "rgb(79, 70, 229)", "pad": 24,
                                            "padx": 40}),
             (0, "a", (380, 110, 80, 20), {"own": "Learn more", "href": True}),
             (0, "span", (100, 160, 60, 22), {"own": "New", "bg": "rgb(224, 231, 255)", "rad": 11, "fs": 12}),
             (0, "img", (100, 200, 48, 48), {"rad": 24}),
             (0, "img", (200, 200, 24, 24), {}),
             (0, "img", (300, 200, 600, 300), {}),
             (0, "img", (1000, 200, 150, 40), {"alt": "Acme logo"}),
             (0, "ul", (100, 520, 300, 60), {}), (10, "li", (100, 520, 300, 20), {"own": "One"}),
             (10, "li", (100, 540, 300, 20), {"own": "Two"}),
             (0, "input", (500, 520, 200, 40), {"type": "email"}),
             (0, "p", (800, 520, 400, 40), {"own": "Plain words that explain the plans in a sentence or two."}))
    assert kinds(t) == [("h2", "heading"), ("a", "button"), ("a", "button"), ("a", "link"), ("span", "badge"),
                        ("img", "avatar"), ("img", "icon"), ("img", "image"), ("img", "logo"), ("ul", "list"),
                        ("input", "input"), ("p", "paragraph")]


def test_explicit_data_layout_wins_and_can_be_ignored():
    t = tree(ROOT, (0, "a", (100, 100, 120, 44), {"own": "Buy", "href": True, "cls": "btn", "dl": "link"}),
             (0, "div", (100, 200, 300, 100), {"dl": "none"}),
             (2, "p", (100, 200, 300, 20), {"own": "Inside a marked wrapper"}))
    assert kinds(t) == [("a", "link"), ("p", "paragraph")]
    assert kinds(t, honour=False) == [("a", "button"), ("p", "paragraph")]


def test_a_guess_around_an_explicit_element_is_a_wrapper_unless_it_may_hold_it():
    """A brand bar the rules call a logo, around a link marked data-layout="logo", is not a second
    logo; a heading may still hold an explicit badge."""
    t = tree(ROOT, (0, "div", (100, 0, 150, 56), {"cls": "navbar-brand"}),
             (1, "a", (100, 0, 150, 56), {"href": True, "dl": "logo"}), (2, "img", (100, 12, 128, 32), {"alt": "Acme"}),
             (0, "h2", (500, 100, 400, 40), {"own": "Title ", "fs": 32}),
             (4, "span", (700, 110, 60, 20), {"own": "New", "dl": "badge"}))
    assert kinds(t) == [("a", "logo"), ("h2", "heading"), ("span", "badge")]
    assert kinds(t, honour=False)[0] == ("div", "logo")  # the rules alone: the brand bar is the logo


def test_an_unknown_data_layout_value_is_refused():
    t = tree(ROOT, (0, "div", (0, 0, 100, 100), {"dl": "carousel"}))
    with pytest.raises(elements.LayoutAttributeError, match="carousel"):
        elements.label_tree(t)
    assert kinds(t, honour=False) == []


def test_a_card_holds_elements_and_a_leaf_does_not():
    t = tree(ROOT,
             (0, "div", (100, 100, 300, 300), {"bd": 4, "rad": 8}),
             (1, "h3", (120, 120, 200, 30), {"own": "Pro", "fs": 24}),
             (1, "p", (120, 170, 200, 60), {"own": "For growing teams who need more seats."}),
             (0, "h2", (500, 100, 400, 40), {"own": "Title ", "fs": 32}),
             (4, "span", (700, 110, 60, 20), {"own": "Popular", "bg": "rgb(250, 200, 0)", "rad": 4, "fs": 12}),
             (4, "strong", (650, 110, 40, 20), {"own": "not a badge"}))
    assert kinds(t) == [("div", "card"), ("h3", "heading"), ("p", "paragraph"), ("h2", "heading"),
                        ("span", "badge")]


def test_joined_rows_and_full_width_bands_are_not_cards():
    t = tree(ROOT,
             (0, "div", (100, 100, 800, 50), {"bd": 4}), (1, "span", (110, 110, 300, 20), {"own": "Question one?"}),
             (1, "span", (110, 130, 300, 20), {"own": "Answer"}),
             (0, "div", (100, 150, 800, 50), {"bd": 4}), (4, "span", (110, 160, 300, 20), {"own": "Question two?"}),
             (4, "span", (110, 180, 300, 20), {"own": "Answer"}))
    assert ("div", "card") not in kinds(t)


def test_unlabelled_content_skips_the_section():
    t = tree(ROOT, (0, "h2", (100, 40, 400, 40), {"own": "Title", "fs": 32}),
             *[(0, "span", (100 + 10 * k, 300, 3, 20), {"own": "x"}) for k in range(3)])
    res = section_result("p.html#0@1440", t, Options(honour_section=False), 0, 2)
    assert res.row is None and res.reason == "unlabelled_content" and "3 of 4" in res.detail


def test_section_scores_explicit_wins_unknown_refused_uncertain_reported():
    t = tree((-1, "section", (0, 0, 1440, 500), {"ds": "pricing"}), (0, "p", (10, 10, 300, 20), {"own": "Hi."}))
    els = elements.label_tree(t)
    assert sections.classify(t, els).section_type == "pricing"
    verdict = sections.classify(t, els, honour_explicit=False)
    assert verdict.section_type is None and "evidence" in verdict.reason
    t.nodes[0]["ds"] = "blog"
    with pytest.raises(sections.SectionAttributeError, match="blog"):
        sections.classify(t, els)


@pytest.mark.parametrize("texts, want", [
    (["$9 / month", "$29 / month", "Basic", "Pro"], "pricing"),
    (["How do refunds work?", "Can I cancel?", "Questions"], "faq"),
    (["98%", "12k+", "3.2M", "Our numbers"], "stats"),
])
def test_content_signals_classify_without_names(texts, want):
    specs = [ROOT] + [(0, "h3", (100, 60 * k, 300, 40), {"own": s, "fs": 24}) for k, s in enumerate(texts)]
    t = tree(*specs)
    assert sections.classify(t, elements.label_tree(t), 2, 5, honour_explicit=False).section_type == want


def test_sources_and_widths_are_checked(tmp_path):
    (tmp_path / "a.html").write_text("<section></section>")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.html").write_text("<section></section>")
    (tmp_path / "notes.txt").write_text("hi")
    names = [s.name for s in collect_sources([str(tmp_path), str(tmp_path / "a.html")])]
    assert names == ["a.html", "sub/a.html", "a.html~2"]
    with pytest.raises(dataset.DatasetError, match="no such file"):
        collect_sources([str(tmp_path / "missing.html")])
    with pytest.raises(ConfigError, match="not an HTML file"):
        collect_sources([str(tmp_path / "notes.txt")])
    with pytest.raises(ConfigError, match="this machine"):
        collect_sources(["https://example.com/"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(dataset.DatasetError, match="no .html"):
        collect_sources([str(tmp_path / "empty")])
    with pytest.raises(ConfigError, match="--widths"):
        check_widths([1440, 100])
    with pytest.raises(ConfigError, match="keep"):
        from_html([str(tmp_path / "a.html")], tmp_path / "o", split="keep")


def test_a_missing_chromium_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setenv(browser.CHROMIUM_ENV, str(tmp_path / "no-chromium"))
    with pytest.raises(browser.BrowserError, match="not an executable"):
        browser.chromium_path()
    monkeypatch.delenv(browser.CHROMIUM_ENV)
    monkeypatch.setattr(browser, "CHROMIUM_PATHS", ())
    monkeypatch.setattr(browser.shutil, "which", lambda name: None)
    with pytest.raises(browser.BrowserError, match="apt-get install -y chromium"):
        browser.chromium_path()


# ---------------------------------------------------------------------------- the real browser

GOOD = """<!doctype html><html><head><style>
body { margin: 0; font-family: sans-serif; }
.btn { display: inline-block; padding: 12px 24px; background: #2563eb; color: #fff; border-radius: 8px; }
</style></head><body>
<header data-section="navbar" style="display:flex;justify-content:space-between;padding:16px 40px">
  <a href="/" data-layout="logo" style="font-weight:700">Acme</a>
  <nav data-layout="navigation"><a href="#">One</a> <a href="#">Two</a> <a href="#">Three</a></nav>
</header>
<section data-section="call_to_action" style="padding:60px 40px">
  <h2 data-layout="heading">Ready to start?</h2>
  <a class="btn" href="#" data-layout="link">Start</a>
</section>
</body></html>"""

BAD_PAGES = {
    "broken.html": "<section><h1>Unclosed <div><p>text <b>bold<img src='missing.png' width=300 height=200>"
                   "<img src='data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAAB' width=40 height=40>"
                   "<section data-section='faq'><h2>Why?</h2>"
                   "<h3>How does it work?</h3><h3>Can I cancel?</h3></section>\x00\x01 </body></html></html>",
    "nosections.html": "<html><body><div><p>Just a paragraph, no sections.</p></div></body></html>",
    "badattr.html": "<section data-section='hero'><h1 data-layout='carousel'>x</h1></section>"
                    "<section data-section='blog'><h2>Posts</h2><p>Latest news</p></section>",
    "uncertain.html": "<div style='height:40px'></div><section><p>Just a sentence.</p></section><div style='height:40px'></div>",
}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A folder of test pages and a local HTTP server for it (URLs of pages a user serves locally)."""
    root = tmp_path_factory.mktemp("pages")
    (root / "good.html").write_text(GOOD)
    for name, html in BAD_PAGES.items():
        (root / name).write_text(html, errors="surrogateescape")
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def ingested(served, tmp_path_factory):
    root, base = served
    out = tmp_path_factory.mktemp("ds") / "web"
    with socket.socket() as sock:  # a port nobody listens on: that page fails to load
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}/gone.html"
    report = from_html([str(root), closed, f"{base}/good.html"], out, Options(widths=(1440, 390)),
                       split="50/0/50", seed=1)
    return out, report


def test_rows_are_written_in_the_dataset_format(ingested):
    out, report = ingested
    assert validate_dataset(out)["ok"]
    rows = [r for s in dataset.SPLITS if dataset.shard_paths(out, s) for r in dataset.read_rows(out, s, 100)]
    by_id = {r["id"]: r for r in rows}
    assert {"good.html#0@1440", "good.html#1@1440", "good.html#0@390"} <= set(by_id)
    assert any(i.startswith("http://127.0.0.1:") and i.endswith("good.html#1@390") for i in by_id)
    nav = by_id["good.html#0@1440"]
    assert nav["section_type"] == "navbar" and nav["canvas_width"] == 1440
    assert sorted(e["type"] for e in nav["elements"]) == ["logo", "navigation"]
    cta = by_id["good.html#1@1440"]
    assert cta["section_type"] == "call_to_action" and sorted(e["type"] for e in cta["elements"]) == ["heading", "link"]
    img = Image.open(io.BytesIO(cta["image"]))
    assert img.size == (cta["canvas_width"], cta["canvas_height"])
    assert img.convert("RGB").getpixel((int(cta["elements"][1]["x"] * img.width) + 4,
                                        int(cta["elements"][1]["y"] * img.height) + 4)) != (255, 255, 255)
    assert report["manifest"]["generator"]["name"] == "layoutray.data.web"


def test_bad_pages_are_counted_skips_not_tracebacks(ingested):
    _, report = ingested
    skips = {(s["id"].split("@")[0], s["reason"]) for s in report["skips"]}
    assert ("nosections.html", "no_sections") in skips
    assert ("badattr.html#0", "bad_data_layout") in skips
    assert ("badattr.html#1", "bad_data_section") in skips
    assert ("uncertain.html#0", "section_type_uncertain") in skips
    assert report["skipped"]["no_sections"] == 2  # one per width
    assert report["pages"] == 7 and report["pages_failed"] == 1  # the good page after it still loads
    assert any(s["reason"] == "page_failed" and "gone.html" in s["id"] for s in report["skips"])


def test_broken_html_still_renders(ingested):
    out, report = ingested
    rows = [r for s in dataset.SPLITS if dataset.shard_paths(out, s) for r in dataset.read_rows(out, s, 100)]
    broken = [r for r in rows if r["id"].startswith("broken.html#")]
    assert len(broken) == 2  # the parser's repair of the markup: one outer section, at both widths
    assert "heading" in {e["type"] for e in broken[0]["elements"]}


def test_ignoring_the_attributes_and_no_images(served, tmp_path):
    root, _ = served
    opts = Options(widths=(1024,), honour_layout=False, honour_section=False, images=False)
    report = from_html([str(root / "good.html")], tmp_path / "o", opts, split="100/0/0")
    rows = {r["id"]: r for r in dataset.read_rows(tmp_path / "o", "train", 10)}
    cta = rows["good.html#1@1024"]
    assert cta["image"] is None and sorted(e["type"] for e in cta["elements"]) == ["button", "heading"]
    assert report["rows"] == 2


def test_a_page_set_with_nothing_usable_is_an_error(served, tmp_path):
    root, _ = served
    with pytest.raises(dataset.DatasetError, match="no section could be labelled"):
        from_html([str(root / "nosections.html")], tmp_path / "o")
    with pytest.raises(ConfigError, match="not a valid CSS selector"):
        from_html([str(root / "good.html")], tmp_path / "o", Options(selector="section[["))


@pytest.mark.slow
def test_the_project_pages_are_labelled_as_their_ground_truth_says():
    """The rules alone (data-layout and data-section ignored) against the pages' own attributes."""
    from layoutray.data.web.score import score_pages

    figures = score_pages([str(PAGES)], widths=(1440,))
    assert figures["elements_truth"] >= 500 and figures["sections"] >= 60
    assert set(figures["recall_by_type"]) == set(elements.ELEMENT_TYPES)
    assert figures["element_accuracy"] >= 0.95, figures["confusions"]
    assert figures["element_precision"] >= 0.9, figures["confusions"]
    assert figures["section_accuracy"] >= 0.9, figures["section_errors"]


@pytest.mark.slow
def test_the_training_pages_ingest_whole_at_the_phase1_cap(tmp_path):
    """realweb/train-pages: every section becomes a row at phase 1's element cap (no skips), and no
    page there is a test page."""
    train = REPO / "realweb" / "train-pages"
    assert not {p.name for p in train.glob("*.html")} & {p.name for p in PAGES.glob("*.html")}
    doc = from_html([str(train)], tmp_path / "ds", Options(widths=(1440,), max_elements=16))
    assert doc["skipped"] == {} and doc["sections"] >= 190, doc["skipped"]


def test_every_section_type_is_in_the_project_pages():
    import re

    found = set()
    for page in PAGES.glob("*.html"):
        found |= set(re.findall(r'data-section="([a-z_]+)"', page.read_text()))
    assert found == set(sections.SECTION_TYPES)
