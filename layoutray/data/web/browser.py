"""Headless Chromium through Playwright: load a page, take its screenshot, read its DOM.

The browser is the system's Chromium (Debian's `chromium` package, /usr/bin/chromium, or
$LAYOUTRAY_CHROMIUM), driven by Playwright for Python with `executable_path`: nothing is
downloaded at install time. One browser serves a whole run; each page gets a fresh context.

A page's DOM reaches Python as flat lists of node features (`EXTRACT_JS`), one list per
section: the labelling rules (`layoutray.data.web.elements`) run in Python, where they are
plain functions that unit tests can call without a browser.
"""

from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path
from urllib.parse import urlsplit

from layoutray.data.dataset import DatasetError

CHROMIUM_ENV = "LAYOUTRAY_CHROMIUM"
CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
# The flags that run Chromium headless in a container with no network or GPU; Playwright adds
# --headless and a fresh --user-data-dir of its own.
CHROMIUM_ARGS = ("--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync")
VIEWPORT_HEIGHT = 900
LOAD_TIMEOUT_MS = 15_000
# Requests a page may make: its own files, inline data, and pages served on this machine.
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})

# Default section roots: sectioning tags and landmark roles. Only the outermost match counts,
# so a <nav> inside a <header> is an element of the header's section, not a section.
DEFAULT_SELECTOR = ("header, nav, section, footer, [role=banner], [role=navigation], [role=contentinfo], "
                    "[role=region], [data-section]")

# Runs in the page. Returns {"sections": [{"nodes": [...]}], "page": {...}}: each section's
# element subtree in document order, each node with its parent's index and the computed-style
# facts the rules read. Boxes are page coordinates [x, y, w, h] in CSS px.
EXTRACT_JS = r"""
(selector) => {
  const SKIP = new Set(["SCRIPT", "STYLE", "TEMPLATE", "NOSCRIPT", "META", "LINK", "BR", "WBR", "HEAD"]);
  const LEAF = new Set(["svg", "img", "video", "canvas", "iframe", "input", "textarea", "select", "picture"]);
  const sx = window.scrollX, sy = window.scrollY;
  const box = (r) => [r.left + sx, r.top + sy, r.width, r.height];
  const attr = (el, name) => el.getAttribute(name);
  const ownText = (el) => {
    let t = "";
    for (const c of el.childNodes) if (c.nodeType === 3) t += c.nodeValue;
    return t.replace(/\s+/g, " ").trim();
  };
  const textBox = (el) => {
    const range = document.createRange();
    range.selectNodeContents(el);
    const r = range.getBoundingClientRect();
    return r.width > 0 && r.height > 0 ? box(r) : null;
  };
  const radius = (cs, r) => {
    const v = cs.borderTopLeftRadius;
    const n = parseFloat(v) || 0;
    return v.endsWith("%") ? n / 100 * Math.min(r.width, r.height) : n;
  };
  const border = (cs) => ["Top", "Right", "Bottom", "Left"].filter((s) =>
    parseFloat(cs["border" + s + "Width"]) > 0 && cs["border" + s + "Style"] !== "none"
    && !cs["border" + s + "Color"].endsWith(", 0)") && cs["border" + s + "Color"] !== "transparent").length;
  const features = (el, parent) => {
    const cs = getComputedStyle(el), r = el.getBoundingClientRect(), tag = el.tagName.toLowerCase();
    const text = (el.textContent || "").replace(/\s+/g, " ").trim();
    const before = getComputedStyle(el, "::before").content;
    return {
      p: parent, tag, id: el.id || "", cls: attr(el, "class") || "", role: attr(el, "role") || "",
      dl: attr(el, "data-layout"), ds: attr(el, "data-section"), type: (attr(el, "type") || "").toLowerCase(),
      href: el.hasAttribute("href"), hrefv: (attr(el, "href") || "").slice(0, 80),
      level: parseInt(attr(el, "aria-level")) || 0, alt: attr(el, "alt") || "", src: attr(el, "src") || "",
      aria: attr(el, "aria-label") || "", exp: el.hasAttribute("aria-expanded"), cur: el.hasAttribute("aria-current"),
      hidden: el.getAttribute("aria-hidden") === "true",
      box: box(r), tbox: text ? textBox(el) : null, own: ownText(el).slice(0, 160), text: text.slice(0, 240),
      tlen: text.length, fs: parseFloat(cs.fontSize) || 0, fw: parseInt(cs.fontWeight) || 400,
      upper: cs.textTransform === "uppercase", disp: cs.display,
      vis: cs.visibility !== "hidden" && parseFloat(cs.opacity) > 0.05,
      bg: cs.backgroundColor, bgimg: cs.backgroundImage.includes("url("),
      grad: cs.backgroundImage.includes("gradient("), bd: border(cs), rad: radius(cs, r),
      sh: cs.boxShadow !== "none", pad: (parseFloat(cs.paddingTop) || 0) + (parseFloat(cs.paddingBottom) || 0),
      padx: (parseFloat(cs.paddingLeft) || 0) + (parseFloat(cs.paddingRight) || 0),
      pseudo: before !== "none" && before !== "normal" && before !== '""',
      list: cs.listStyleType !== "none", nat: tag === "img" ? [el.naturalWidth, el.naturalHeight] : null,
      over: cs.overflow,
    };
  };
  const walk = (el, parent, out) => {
    // display:none, or inside a closed <details> or any content-visibility:hidden subtree
    if (el.checkVisibility ? !el.checkVisibility() : getComputedStyle(el).display === "none") return;
    const n = features(el, parent);
    out.push(n);
    if (LEAF.has(n.tag)) return;
    const me = out.length - 1;
    for (const c of el.children) if (!SKIP.has(c.tagName)) walk(c, me, out);
  };
  const all = [...document.querySelectorAll(selector)];
  const inside = (el) => {
    for (let p = el.parentElement; p; p = p.parentElement) if (p.matches(selector)) return true;
    return false;
  };
  const sections = all.filter((el) => !inside(el)).map((el) => {
    const out = [];
    walk(el, -1, out);
    return {nodes: out};
  });
  const bodyCs = getComputedStyle(document.body);
  return {
    sections,
    page: {width: document.documentElement.scrollWidth, height: document.documentElement.scrollHeight,
           bg: bodyCs.backgroundColor, htmlbg: getComputedStyle(document.documentElement).backgroundColor,
           fs: parseFloat(bodyCs.fontSize) || 16, title: document.title || ""},
  };
}
"""


class BrowserError(DatasetError):
    """Chromium or Playwright is missing or would not start; the message says how to fix it."""


def chromium_path() -> str:
    """$LAYOUTRAY_CHROMIUM, else Debian's chromium; a BrowserError naming the install step if none."""
    given = os.environ.get(CHROMIUM_ENV)
    if given:
        if not (Path(given).is_file() and os.access(given, os.X_OK)):
            raise BrowserError(f"${CHROMIUM_ENV}={given}: not an executable file")
        return given
    for path in CHROMIUM_PATHS:
        if Path(path).is_file():
            return path
    found = shutil.which("chromium")
    if found:
        return found
    raise BrowserError("no Chromium found (looked for /usr/bin/chromium); install Debian's: "
                       "apt-get update && apt-get install -y chromium, or set $LAYOUTRAY_CHROMIUM")


def is_local_url(url: str) -> bool:
    """file: and data: URLs, and http(s) URLs of this machine: the only ones a page may load."""
    parts = urlsplit(url)
    if parts.scheme in ("file", "data", "about", "blob"):
        return True
    return parts.scheme in ("http", "https") and (parts.hostname or "") in LOCAL_HOSTS


def _route(route) -> None:
    # Pages are rendered offline and deterministically: a remote font or script would make
    # the screenshot depend on the network, so only local requests go through.
    if is_local_url(route.request.url):
        route.continue_()
    else:
        route.abort()


class Browser:
    """One headless Chromium for many pages: `with Browser() as b: b.capture(url, widths)`.

    Pages are loaded one after another into one tab (a new tab per page costs more than the
    page itself); a tab whose page failed is replaced before the next one."""

    def __init__(self, executable: str | None = None):
        self.executable = executable or chromium_path()
        self._pw = self._browser = self._context = self._page = self._cdp = None

    def __enter__(self) -> "Browser":
        try:
            from playwright.sync_api import Error, sync_playwright
        except ImportError:
            raise BrowserError("Playwright for Python is not installed; run scripts/install.sh "
                               "(it installs the project's pinned playwright)") from None
        self._pw = sync_playwright().start()
        try:
            self._browser = self._pw.chromium.launch(executable_path=self.executable, args=list(CHROMIUM_ARGS))
        except Error as e:
            self._pw.stop()
            first = (str(e).strip().splitlines() or [""])[0]
            raise BrowserError(f"{self.executable}: Chromium would not start ({first})") from None
        self._context = self._browser.new_context(viewport={"width": 1440, "height": VIEWPORT_HEIGHT},
                                                  device_scale_factor=1)
        self._context.route("**/*", _route)
        return self

    def __exit__(self, *exc) -> None:
        if self._browser is not None:
            self._browser.close()
        if self._pw is not None:
            self._pw.stop()

    def _tab(self):
        if self._page is None:
            self._page = self._context.new_page()
            self._cdp = self._context.new_cdp_session(self._page)
        return self._page

    def check_selector(self, selector: str) -> bool:
        """Whether the browser can parse a CSS selector."""
        from playwright.sync_api import Error

        try:
            self._tab().evaluate("(s) => document.querySelectorAll(s).length", selector)
            return True
        except Error:
            return False

    def capture(self, url: str, widths: tuple[int, ...], selector: str = DEFAULT_SELECTOR) -> list[dict]:
        """For each width: {"width", "png" (full-page screenshot), "sections", "page"}.

        Raises playwright's Error for a page that does not load; the caller counts it."""
        from playwright.sync_api import Error

        page = self._tab()
        try:
            page.goto(url, wait_until="load", timeout=LOAD_TIMEOUT_MS)
            return [self._at_width(page, w, selector) for w in widths]
        except Error:
            self._page.close()
            self._page = None  # a fresh tab for the next page
            raise

    def _at_width(self, page, width: int, selector: str) -> dict:
        if page.viewport_size["width"] != width:
            page.set_viewport_size({"width": width, "height": VIEWPORT_HEIGHT})
        dom = page.evaluate(EXTRACT_JS, selector)  # reading boxes forces layout at this width
        return {"width": width, "png": self._screenshot(dom["page"]), **dom}

    def _screenshot(self, info: dict) -> bytes:
        # The DevTools call rather than page.screenshot: optimizeForSpeed makes Chromium's PNG
        # encoder several times faster, and the crops are re-encoded by the caller anyway.
        clip = {"x": 0, "y": 0, "width": info["width"], "height": info["height"], "scale": 1}
        shot = self._cdp.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                         "optimizeForSpeed": True, "clip": clip})
        return base64.b64decode(shot["data"])
