"""The playground (/) and the rollout console (/console), in a real browser against a live Serve app.

Fast part (no Ray): the pages and assets are served with a self-only Content-Security-Policy, no
request path reaches the disk outside the shipped files, the files load nothing from elsewhere and
use nothing the policy blocks, they ship in the wheel, and `GET /admin/stats` reports the judge's
window numbers.

Slow part: one Serve application (tiny real artifacts) and Debian's Chromium driven headless by
Playwright. The playground draws, for a spec, the boxes the API returned (greedy requests are
deterministic, so the page's boxes are compared with a direct call's), and shows the API's own
error words for a bad upload; the console shows the versions' model ids and weights, a canary's
weight moving under load, pause, abort (traffic back to stable at once) and promote, with the
decisions' reasons; both pages fit a 390 px wide phone screen.

With LAYOUTRAY_WEB_SCREENSHOTS=DIR the slow tests also write DIR/playground.png and
DIR/console.png (desktop width): the README's pictures
(`LAYOUTRAY_WEB_SCREENSHOTS=docs/images pytest tests/serving/test_web.py`).
"""

import base64
import json
import os
import re
import shutil
import threading
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import pytest
import requests

from conftest import free_port, tiny_serving_artifact, wait_for

REPO = Path(__file__).resolve().parents[2]
TOKEN = "test-admin-token-web-3b7e"
SPEC = {"section_type": "hero", "elements": ["heading", "paragraph", "button"]}
LOAD_BODY = dict(SPEC, canvas={"width": 1440, "height": 800})
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}
SHOTS = os.environ.get("LAYOUTRAY_WEB_SCREENSHOTS")


# ----------------------------------------------------------------------------- fast: no Ray


@pytest.fixture(scope="module")
def client():
    """The pages' routes alone on a real HTTP server (uvicorn, 127.0.0.1): a requests.Session
    whose paths are relative to it."""
    import uvicorn
    from fastapi import FastAPI

    from serving import web

    app = FastAPI()
    web.add_routes(app)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 30, "uvicorn to start", poll=0.05)

    class Client(requests.Session):
        def request(self, method, url, *a, **kw):
            return super().request(method, f"http://127.0.0.1:{port}{url}", *a, timeout=30, **kw)
    with Client() as c:
        yield c
    server.should_exit = True
    thread.join(timeout=10)


def test_pages_and_assets_carry_a_self_only_policy(client):
    for path, kind in (("/", "text/html"), ("/console", "text/html"), ("/web/app.css", "text/css"),
                       ("/web/console.js", "text/javascript"), ("/web/playground.js", "text/javascript")):
        r = client.get(path)
        assert r.status_code == 200 and r.headers["content-type"].startswith(kind), (path, r.status_code)
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "connect-src 'self'" in csp
        assert "unsafe" not in csp and "http" not in csp and "frame-ancestors 'none'" in csp
        assert r.headers["x-content-type-options"] == "nosniff"


def test_only_shipped_assets_are_served(client):
    for path in ("/web/..%2Fweb.py", "/web/%2E%2E%2Fapp.py", "/web/index.html", "/web/nothing.js", "/web/"):
        r = client.get(path)
        assert r.status_code == 404, (path, r.status_code, r.text[:80])
        assert "import" not in r.text  # no Python source, whatever the path


def test_pages_load_nothing_from_elsewhere_and_nothing_the_policy_blocks():
    from serving.web import WEB_DIR

    files = sorted(WEB_DIR.iterdir())
    assert {"index.html", "console.html", "app.css", "common.js", "playground.js", "console.js"} <= {f.name for f in files}
    for f in files:
        text = f.read_text()
        urls = set(re.findall(r"(?:https?:)?//[A-Za-z0-9.-]+\.[a-z]{2,}[^\s\"'`)]*", text)) - {"http://www.w3.org/2000/svg"}
        assert not urls, f"{f.name} refers to other hosts: {urls}"
        assert "@import" not in text and "eval(" not in text and "innerHTML" not in text, f.name
        if f.suffix == ".html":  # the CSP blocks inline code and style: none may be relied on
            assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), f"{f.name}: inline script"
            assert not re.search(r"\son[a-z]+=|\sstyle=|<style", text), f"{f.name}: inline handler or style"


def test_web_files_ship_in_the_wheel():
    from serving.web import WEB_DIR

    data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    patterns = data.get("serving", [])
    for f in WEB_DIR.iterdir():
        rel = f.relative_to(REPO / "serving").as_posix()
        assert any(fnmatch(rel, p) for p in patterns), f"{rel} is not in [tool.setuptools.package-data] serving"


def test_version_stats_reports_the_judges_window_numbers():
    from serving.judge import Windows
    from serving.rollout import RolloutState
    from serving.web import version_stats

    now = [1000.0]
    windows = Windows(clock=lambda: now[0])
    quality = {"layouts": 1, "valid": 1, "overlap": [0.25], "alignment": [0.01]}
    for i in range(8):
        windows.add("blue", True, 10.0 + i, quality)
    windows.add("green", False, 50.0)
    windows.add("green", True, 30.0, {"layouts": 1, "valid": 0, "overlap": [0.5], "alignment": [0.02]})
    now[0] += 4.0
    state = RolloutState(status="running", stable="blue", canary="green", weights={"blue": 90, "green": 10})
    out = version_stats(windows, state, {"blue": "a@1", "green": "b@2"}, now[0])
    blue, green = out["versions"]
    assert (blue["slot"], blue["role"], blue["model"], blue["weight"]) == ("blue", "stable", "a@1", 90)
    assert (green["role"], green["model"], green["weight"]) == ("canary", "b@2", 10)
    assert blue["rate_per_s"] == 2.0 and green["rate_per_s"] == 0.5
    assert {k: blue[k] for k in windows.of("blue").summary()} == windows.of("blue").summary()
    assert green["error_rate"] == 0.5 and green["valid_share"] == 0.0 and green["p95_ms"] == 30.0
    assert out["window"] == {"opened_at": 1000.0, "age_s": 4.0, "judged": True}
    assert out["thresholds"]["max_error_rate"] == state.thresholds["max_error_rate"]
    young = version_stats(windows, state, {}, windows.opened + 0.2)["versions"][0]
    assert young["rate_per_s"] is None and young["requests"] == 8 and young["model"] is None


# ----------------------------------------------------------------------------- slow: Serve + Chromium


class Served:
    def __init__(self, url, root, args):
        self.url, self.root, self.args = url, root, args
        # Same weights in both slots, so every analysis window passes on merit; generous latency
        # limits, so a loaded CI machine does not fail a window on noise.
        self.router = {"weights": {"blue": 100, "green": 0}, "tick_s": 0.1, "admin_token_file": str(root / "token"),
                       "rollout": {"latency_slack_ms": 5000.0, "max_failed_windows": 5}}

    def deploy(self):
        from serving.deploy import app_config, deploy
        deploy([app_config("layoutray", "/", self.args, router=self.router, blue={"max_batch_size": 8},
                           green={"max_batch_size": 8})])

    def post(self, body, session=None):
        return (session or requests).post(self.url + "/v1/layouts", json=body, timeout=60)

    def admin(self, method, path=""):
        return requests.request(method, self.url + "/admin/rollout" + path,
                                headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)

    def models(self):
        r = requests.get(self.url + "/v1/models", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        return {v["role"]: v for v in r.json()["versions"]}


@pytest.fixture(scope="module")
def served(ray_local, tmp_path_factory):
    from ray import serve

    root = tmp_path_factory.mktemp("web")
    stable = tiny_serving_artifact(root / "stable", seed=1)
    canary = root / "candidate"  # the same weights under another name: its own model id
    shutil.copytree(stable, canary)
    meta = json.loads((canary / "meta.json").read_text())
    meta["metadata"]["name"] = "tiny-1-candidate"
    (canary / "meta.json").write_text(json.dumps(meta))
    (root / "token").write_text(TOKEN + "\n")
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port, "request_timeout_s": 60})
    ctx = Served(f"http://127.0.0.1:{port}", root, {"stable_model": stable, "canary_model": str(canary),
                                                   "state_dir": str(root / "state"), "model_num_cpus": 0.5})
    ctx.stable_dir = stable
    ctx.deploy()
    wait_for(lambda: requests.get(ctx.url + "/healthz", timeout=10).status_code == 200, 60, "healthz", poll=0.2)
    yield ctx
    serve.shutdown()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    from layoutray.data.web.browser import CHROMIUM_ARGS, chromium_path

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium_path(), args=list(CHROMIUM_ARGS), headless=True)
        yield b
        b.close()


@pytest.fixture
def page_of(browser):
    """page_of(viewport) -> a fresh page; its CSP violations and script errors are collected in
    page.problems (none are allowed)."""
    contexts = []

    def make(viewport=DESKTOP):
        ctx = browser.new_context(viewport=viewport, device_scale_factor=1)
        contexts.append(ctx)
        page = ctx.new_page()
        page.set_default_timeout(60_000)
        page.problems = []
        page.on("pageerror", lambda e: page.problems.append(f"script error: {e}"))
        page.on("console", lambda m: page.problems.append(m.text)
                if m.type == "error" and "Content Security Policy" in m.text else None)
        page.on("dialog", lambda d: d.accept())
        return page

    yield make
    for ctx in contexts:
        ctx.close()


def _shot(page, name):
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / name), full_page=True)


def _open(page, url):
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']")


def _fill_spec(page, samples, temperature):
    page.select_option("#section", SPEC["section_type"])
    for t in SPEC["elements"]:
        page.click(f"#palette button[data-type='{t}']")
    page.fill("#samples", str(samples))
    page.fill("#temperature", str(temperature))


def _wait_samples(page, n):
    """Wait until the page shows n drawn layouts. (Locator waits only: Playwright's
    wait_for_function evaluates a string, which the pages' CSP forbids.)"""
    page.wait_for_selector(f"figure.sample[data-index='{n - 1}']")
    assert page.locator("figure.sample").count() == n


def _boxes(page):
    return page.eval_on_selector_all("figure.sample", """figs => figs.map(f =>
        [...f.querySelectorAll('rect.box')].map(r => ({type: r.dataset.type, x: +r.getAttribute('x'),
          y: +r.getAttribute('y'), width: +r.getAttribute('width'), height: +r.getAttribute('height')})))""")


@pytest.mark.slow
def test_playground_draws_the_layouts_the_api_returns(served, page_of):
    page = page_of()
    _open(page, served.url + "/")
    # Controls for request fields appear only when this server's API takes them.
    props = requests.get(served.url + "/openapi.json", timeout=30).json()["paths"]["/v1/layouts"]["post"][
        "requestBody"]["content"]["application/json"]["schema"]["properties"]
    for name in ("steps", "constraints", "fixed"):
        assert page.is_visible(f"[data-field='{name}']") == (name in props), name
    _fill_spec(page, samples=2, temperature=0)
    page.click("#generate")
    _wait_samples(page, 2)
    direct = served.post(dict(SPEC, canvas={"width": 1440, "height": 800}, samples=2, temperature=0)).json()
    drawn = _boxes(page)
    assert [len(b) for b in drawn] == [3, 3]
    assert drawn == [[{k: e[k] for k in ("type", "x", "y", "width", "height")} for e in lay["elements"]]
                     for lay in direct["layouts"]]  # greedy: the same boxes as a direct call
    assert sorted(b["type"] for b in drawn[0]) == sorted(SPEC["elements"])
    assert page.text_content("#result-version") == direct["version"] == served.models()["stable"]["id"]
    assert re.fullmatch(r"\d+ ms", page.text_content("#result-latency"))
    assert "alignment" in page.text_content("figure.sample figcaption")
    with page.expect_download() as dl:  # the PNG export renders in the page (CSP allows it)
        page.click("figure.sample button")
    assert dl.value.suggested_filename == "layout-1.png"
    page.fill("#temperature", "0.8")
    page.fill("#samples", "3")
    page.click("#generate")
    _wait_samples(page, 3)
    _shot(page, "playground.png")
    assert page.problems == []


@pytest.mark.slow
def test_playground_shows_the_api_error_for_a_bad_upload(served, page_of):
    page = page_of()
    _open(page, served.url + "/")
    bad = b"\x89PNG\r\n\x1a\n this is not an image"
    page.set_input_files("#image", files=[{"name": "wireframe.png", "mimeType": "image/png", "buffer": bad}])
    _fill_spec(page, samples=1, temperature=0)
    page.wait_for_selector("#preview[src]", state="attached")
    page.click("#generate")
    page.wait_for_selector("#error:not(:empty)")
    api = served.post(dict(SPEC, image=base64.b64encode(bad).decode(), canvas={"width": 1440, "height": 800},
                           samples=1, temperature=0))
    assert api.status_code == 422, api.text
    err = api.json()["error"]
    # (the decoder's message names a Python object by its address, which differs per call)
    same = lambda text: re.sub(r"0x[0-9a-f]+", "0x?", text)  # noqa: E731
    assert same(page.text_content("#error")) == same(f"{err['field']}: {err['message']} (HTTP 422)")
    assert page.locator("figure.sample").count() == 0
    assert [p for p in page.problems if "Content Security Policy" in p] == []


def _weight(page, role):
    return page.text_content(f".version[data-role='{role}'] .weight-value")


def _wait_weight(page, role, text, timeout_s):
    try:
        wait_for(lambda: _weight(page, role) == text, timeout_s, f"{role} weight {text} in the page", poll=0.2)
    except AssertionError as e:
        raise AssertionError(f"{e}; decisions shown: {page.text_content('#timeline')[:2000]}") from None


class Load:
    """Three clients posting one greedy spec until stopped (the canary's windows need requests)."""

    def __init__(self, served):
        self.served, self.stop, self.codes = served, threading.Event(), []
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(3)]

    def _run(self):
        s = requests.Session()
        while not self.stop.is_set():
            try:
                self.codes.append(self.served.post(LOAD_BODY, session=s).status_code)
            except requests.RequestException:
                self.codes.append(0)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)


def _connect(page, token):
    page.fill("#token", token)
    page.click("#token-form button[type=submit]")


@pytest.mark.slow
def test_console_follows_a_canary_pause_abort_and_promote(served, page_of):
    page = page_of()
    _open(page, served.url + "/console")
    _connect(page, "wrong-token")
    page.wait_for_selector("#token-error:not(:empty)")
    assert "missing or wrong bearer token" in page.text_content("#token-error")
    assert page.is_hidden("#console")
    _connect(page, TOKEN)
    page.wait_for_selector(".version[data-role='canary']")
    # the token is kept nowhere but in the page's script
    assert page.evaluate("localStorage.length + sessionStorage.length") == 0 and page.evaluate("document.cookie") == ""
    assert TOKEN not in page.content() and TOKEN not in page.url and page.input_value("#token") == ""
    models = served.models()
    for role in ("stable", "canary"):
        assert page.text_content(f".version[data-role='{role}'] .model") == models[role]["id"]
    assert models["stable"]["id"] != models["canary"]["id"]
    assert (_weight(page, "stable"), _weight(page, "canary")) == ("100 %", "0 %")

    with Load(served) as load:
        # Each window needs min_requests canary requests (a hold closes the window too): 3 s at
        # 25 % of the load's rate is plenty even on a loaded 2-core machine.
        page.fill("#steps", "25,50,100")
        page.fill("#interval", "3")
        page.fill("#min-requests", "3")
        page.fill("#max-p95", "20000")
        page.click("#start")
        page.wait_for_selector("#status[data-status='running']")
        _wait_weight(page, "canary", "25 %", 30)
        _wait_weight(page, "canary", "50 %", 120)  # the judge advanced it
        # a decision's state (the weights) is saved before its audit entry is appended, so the
        # timeline may show the decision one poll after the weights
        page.wait_for_selector("li.decision[data-decision='advance']", timeout=15_000)
        assert "window passed" in page.text_content("li.decision[data-decision='advance'] .reason")
        wait_for(lambda: re.fullmatch(r"\d+\.\d\d", rate := page.text_content(
            ".version[data-role='stable'] [data-stat='rate']")) and float(rate) > 0, 30, "a stable request rate")
        assert page.text_content(".version[data-role='stable'] [data-stat='p95']").endswith(" ms")
        if SHOTS:  # a picture of a window with some requests in it, not one just opened
            try:
                wait_for(lambda: page.text_content(".version[data-role='canary'] [data-stat='rate']") != "–"
                         and int(page.text_content(".version[data-role='canary'] [data-stat='requests']")) >= 10,
                         20, "a canary window with requests", poll=0.1)
            except AssertionError:
                pass
            _shot(page, "console.png")
        page.click("#pause")
        page.wait_for_selector("#status[data-status='paused']")
        assert page.text_content("#pause") == "Resume" and _weight(page, "canary") == "50 %"
        page.click("#abort")
        page.wait_for_selector("#status[data-status='rolled_back']")
        assert _weight(page, "canary") == "0 %" and _weight(page, "stable") == "100 %"
        top = page.locator("li.decision").first
        assert top.get_attribute("data-decision") == "rollback" and "rolled back by operator" in top.text_content()
        # the abort took effect: from now on only stable answers
        after = [served.post(LOAD_BODY) for _ in range(12)]
    assert {r.headers.get("X-Layoutray-Slot") for r in after} == {"blue"}
    assert set(load.codes) == {200}

    page.fill("#steps", "50,100")
    page.fill("#interval", "600")
    page.click("#start")
    page.wait_for_selector("#status[data-status='running']")
    page.click("#promote")
    page.wait_for_selector("#status[data-status='promoted']")
    assert page.text_content("#stable-slot") == "green" == served.admin("GET").json()["state"]["stable"]
    assert _weight(page, "stable") == "100 %" and page.text_content(".version[data-role='stable'] .model") \
        == models["canary"]["id"]
    assert page.problems == []


@pytest.mark.slow
def test_pages_fit_a_phone_screen_and_show_no_internals(served, page_of):
    for path in ("/", "/console"):
        anon = requests.get(served.url + path, timeout=30)
        assert anon.status_code == 200 and "default-src 'none'" in anon.headers["content-security-policy"]
        assert served.stable_dir not in anon.text and TOKEN not in anon.text
    assert requests.get(served.url + "/admin/stats", timeout=30).status_code == 401
    page = page_of(PHONE)
    _open(page, served.url + "/")
    _fill_spec(page, samples=2, temperature=0)
    page.click("#generate")
    _wait_samples(page, 2)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    box = page.locator("figure.sample svg").first.bounding_box()
    assert 300 <= box["width"] <= PHONE["width"]  # one layout per row, nearly the screen's width
    _open(page, served.url + "/console")
    _connect(page, TOKEN)
    page.wait_for_selector(".version[data-role='canary']")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert page.problems == []
