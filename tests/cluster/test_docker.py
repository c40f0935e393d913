"""The Dockerfile, checked statically (Docker does not run on the development machines)."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(l for l in DOCKERFILE.splitlines() if not l.lstrip().startswith("#")))
    out = []
    for line in text.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _args() -> dict[str, str]:
    return {m.group(1): m.group(2) for op, rest in _instructions() if op == "ARG"
            for m in [re.match(r"(\w+)=(\S+)", rest)] if m}


def test_base_image_is_rays_pinned_2_60_py311():
    froms = [rest for op, rest in _instructions() if op == "FROM"]
    assert len(froms) == 1
    args = _args()
    image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], froms[0])
    assert image == "rayproject/ray:2.60.0-py311-cpu"
    # the GPU build changes only the variant suffix
    assert re.fullmatch(r"rayproject/ray:\$\{RAY_VERSION\}-py311-\$\{RAY_VARIANT\}", froms[0])
    assert args["RAY_VERSION"] == "2.60.0"


def test_installs_with_the_one_install_script():
    runs = " ".join(rest for op, rest in _instructions() if op == "RUN")
    assert "VENV=none bash scripts/install.sh" in runs
    # no second recipe: no direct pip install of the project or its pinned dependencies
    assert not re.search(r"pip3? install", runs)
    assert (ROOT / "scripts" / "install.sh").exists()


def test_runs_as_non_root():
    users = [rest for op, rest in _instructions() if op == "USER"]
    assert users and users[-1] not in ("root", "0", "0:0")
    assert users[-1] == "ray"
    assert all(u == "ray" for u in users), "never switch to root"


def test_default_command_serves_the_serve_config():
    cmds = [rest for op, rest in _instructions() if op == "CMD"]
    assert len(cmds) == 1
    argv = json.loads(cmds[0])  # exec form
    assert "configs/serve.yaml" in argv
    script = ROOT / argv[1]
    assert script.exists() and "serve run" in script.read_text()


def test_dockerignore_keeps_the_context_to_source():
    lines = {l.strip().rstrip("/") for l in (ROOT / ".dockerignore").read_text().splitlines()
             if l.strip() and not l.startswith("#")}
    for must in (".venv", "runs", ".git", "sections"):
        assert must in lines, must


