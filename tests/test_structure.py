"""The shape of the codebase, checked: imports go one way (cli -> trainables / serving ->
layoutray), functions stay short, and tracked text describes the product rather than the
history of its making."""

import ast
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAYERS = {"layoutray": 0, "trainables": 1, "serving": 1, "cli": 2}
MAX_FUNCTION_LINES = 80


def _modules(package: str):
    return sorted((REPO / package).rglob("*.py"))


def _imported_packages(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_imports_go_one_way(package):
    """A layer imports only layers below it: the library never imports cli, trainables or serving;
    trainables and serving never import cli or each other."""
    wrong = []
    for path in _modules(package):
        for other in _imported_packages(path) & set(LAYERS):
            below = LAYERS[other] < LAYERS[package]
            if other != package and not below:
                wrong.append(f"{path.relative_to(REPO)} imports {other}")
    assert not wrong, "\n".join(wrong)


def test_the_import_checker_sees_a_wrong_import(tmp_path):
    bad = tmp_path / "m.py"
    bad.write_text("def f():\n    from cli.main import main\n    import serving.app\n")
    assert _imported_packages(bad) == {"cli", "serving"}


@pytest.mark.parametrize("package", ["layoutray", "trainables", "serving", "cli"])
def test_functions_are_short(package):
    long = []
    for path in _modules(package):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, "\n".join(long)


# Numbered work periods, work-night wording, and pointers to files outside the repository.
NARRATIVE = re.compile(r"\bsessions? \d+\b|\b(this|earlier|last|previous|next) session\b|\btonight\b|shared/notes",
                       re.IGNORECASE)


def test_tracked_text_does_not_narrate_the_work():
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    hits = []
    for name in files:
        path = REPO / name
        if path.suffix not in {".py", ".md", ".yaml", ".yml", ".toml", ".sh", ".txt", ""} or not path.is_file():
            continue
        for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if NARRATIVE.search(line) and path.name != "test_structure.py":
                hits.append(f"{name}:{i}: {line.strip()[:100]}")
    assert not hits, "\n".join(hits[:40])


def test_readme_is_a_short_manual():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 160
    assert "make run" in "\n".join(lines[:20]) and "make test" in "\n".join(lines[:20])


def test_each_config_yaml_starts_with_the_command_that_uses_it():
    for path in sorted((REPO / "configs").rglob("*.yaml")):
        first = path.read_text().splitlines()[0]
        assert re.match(r"#\s+(layoutray|serve) \S+", first), f"{path.relative_to(REPO)}: {first}"
