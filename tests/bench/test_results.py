"""bench/results/*.json and bench/render_docs.py, checked without running any benchmark."""

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import jsonout  # noqa: E402
import render_docs  # noqa: E402

RESULTS = sorted((BENCH / "results").glob("*.json"))
IDLE_FIGURES = {"per_idle_actor": {"wakeups_per_s": 123.4, "cpu_ms_per_s": 2.5, "threads": 25,
                                   "wakeups_per_s_by_thread": {"ray::Idle": 99.9}},
                "baseline_plain_python": {"wakeups_per_s": 0.0, "cpu_ms_per_s": 0.0, "threads": 1},
                "idle_actor_cpu_share_of_one_core": 0.0025}
DOC = """# Page

Before.

<!-- BEGIN RESULTS idle_actors -->
a hand-typed 999 wake-ups/s
<!-- END RESULTS idle_actors -->

<!-- BEGIN RESULTS no_such_key -->
keep me
<!-- END RESULTS no_such_key -->

<!-- BEGIN RESULTS quality -->
<!-- END RESULTS quality -->

<!-- BEGIN RESULTS summary -->
<!-- END RESULTS summary -->

After.
"""


@pytest.fixture
def results(tmp_path, monkeypatch):
    """A results directory holding one idle_actors run, written the way a benchmark writes it."""
    out = tmp_path / "results"
    monkeypatch.setenv(jsonout.ENV_RESULTS, str(out))
    monkeypatch.setattr(jsonout, "gpu_name", lambda: None)  # importing torch would take seconds
    jsonout.write_result("idle_actors", {"actors": 4, "window": 10.0}, IDLE_FIGURES)
    return out


def test_a_result_has_the_required_keys_and_goes_where_asked(results, tmp_path):
    doc = json.loads((results / "idle_actors.json").read_text())
    for key in jsonout.REQUIRED_KEYS:
        assert key in doc
    assert doc["name"] == "idle_actors" and doc["tag"] is None and doc["figures"] == IDLE_FIGURES
    assert doc["machine"]["cores"] >= 1 and doc["machine"]["cpu"]
    assert "T" in doc["date"] and doc["date"].endswith("+00:00")
    jsonout.write_result("idle_actors", {}, {}, tag="b16", results_dir=tmp_path / "elsewhere")
    assert json.loads((tmp_path / "elsewhere" / "idle_actors-b16.json").read_text())["tag"] == "b16"
    with pytest.raises(ValueError):
        jsonout.result_filename("x", "a/b")


def test_render_fills_known_blocks_and_leaves_unknown_ones(results, tmp_path, capsys):
    page = tmp_path / "page.md"
    page.write_text(DOC)
    argv = ["--results-dir", str(results), "--phi-dir", str(tmp_path / "no-phi"), str(page)]

    assert render_docs.main(["--check", *argv]) == 1
    assert page.read_text() == DOC  # --check changes nothing
    assert render_docs.main(argv) == 0
    text = page.read_text()
    assert render_docs.main(["--check", *argv]) == 0  # in sync after rendering

    idle = text.split("<!-- BEGIN RESULTS idle_actors -->\n")[1].split("<!-- END RESULTS idle_actors -->")[0]
    assert "999" not in idle
    assert "| actors | window s | wake-ups/s per actor |" in idle and "| 4 | 10 | 123 |" in idle
    assert "measured 20" in idle and "cores" in idle and "commit" in idle
    assert "<!-- BEGIN RESULTS no_such_key -->\nkeep me\n<!-- END RESULTS no_such_key -->" in text
    assert "unknown results key 'no_such_key'" in capsys.readouterr().err
    quality = text.split("<!-- BEGIN RESULTS quality -->\n")[1].split("<!-- END")[0]
    assert quality.strip() == render_docs.NO_RESULT
    summary = text.split("<!-- BEGIN RESULTS summary -->\n")[1].split("<!-- END")[0]
    assert "[idle_actors](docs/benchmarks.md#idle_actors) | an idle actor wakes 123 times/s" in summary
    assert summary.count(render_docs.NO_RESULT) == len(render_docs.BENCHES) - 1
    assert text.startswith("# Page\n\nBefore.\n") and text.endswith("After.\n")


def test_every_key_has_a_renderer():
    assert set(render_docs.BENCHES) | {"summary", "quality", "phi", "phi_study"} == set(render_docs.RENDERERS)
    assert set(render_docs.BENCHES) == set(render_docs.HEADLINES)


@pytest.mark.parametrize("path", RESULTS, ids=[p.name for p in RESULTS])
def test_recorded_results_have_the_required_keys(path):
    doc = json.loads(path.read_text())
    for key in ("name", "date", "commit", "machine", "config", "figures"):
        assert key in doc, f"{path.name} has no {key}"
    assert doc["machine"].get("cores") and doc["machine"].get("cpu"), path.name
    assert path.name == jsonout.result_filename(doc["name"], doc.get("tag"))


def test_recorded_results_render(tmp_path):
    """Every renderer runs on the results in bench/results/ (the docs' real input)."""
    src = render_docs.Sources(BENCH / "results", tmp_path)
    for key, render in render_docs.RENDERERS.items():
        assert render(src).strip(), key


def test_docs_are_in_sync_with_the_results():
    """The results blocks in the docs are what bench/render_docs.py makes of bench/results/:
    after a benchmark run, `.venv/bin/python bench/render_docs.py` brings them up to date."""
    root = BENCH.parent
    files = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    assert render_docs.main(["--check", *map(str, files)]) == 0, "run bench/render_docs.py"


def test_a_results_file_written_earlier_does_not_make_the_tree_dirty(tmp_path):
    """A run records `dirty` for changes to what it measures; another benchmark's results file,
    written before it in the same tree, is not one."""
    import subprocess

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    (tmp_path / "bench" / "results").mkdir(parents=True)
    (tmp_path / "bench" / "results" / "a.json").write_text("{}")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init")
    assert jsonout.git_commit(tmp_path)["dirty"] is False
    (tmp_path / "bench" / "results" / "a.json").write_text('{"new": 1}')
    assert jsonout.git_commit(tmp_path)["dirty"] is False
    (tmp_path / "code.py").write_text("x = 2\n")
    assert jsonout.git_commit(tmp_path)["dirty"] is True
