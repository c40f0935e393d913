"""Lineage: what made a model artifact, recorded in its meta.json under "lineage".

    {"config_hash": "9c1f...",                       # sha256 of the resolved config (tracking settings left out)
     "data": {"kind": "dataset", "path": "...", "manifest_sha256": "...", "examples": 2000}
           | {"kind": "synth-stream", "seed": 1, "per_epoch": 1600},
     "code": {"commit": "c0fb3dd...", "dirty": false},
     "parent": {"path": "...", "weights_sha256": "...", "phase": "phase1", "config_hash": "...",
                "tracking_run_id": "..."} | null,  # --init-from, or the model `upgrade` grew
     "tracking_run_id": "3f2a..." | null}           # the MLflow run that trained it

The training driver builds it once (`training_lineage`) and every export of the run carries it;
`export_artifact` fills in the config hash and commit for any other caller (`complete`).
`layoutray model show DIR` prints it (`format_lineage`); `/v1/models` shows it to the admin.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

COMMIT_ENV = "LAYOUTRAY_GIT_COMMIT"  # set where the code has no .git (a job's unpacked working_dir)
_SHORT = 12


def _sha256_json(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def config_hash(cfg) -> str:
    """sha256 of the resolved RunConfig, without its tracking section: where a run was logged
    does not change the model it makes."""
    tree = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
    tree.pop("tracking", None)
    return _sha256_json(tree)


def manifest_fingerprint(manifest: dict) -> str:
    """sha256 of a dataset manifest without its creation time: the same shards (each with its
    own sha256 in the manifest) give the same fingerprint whenever they were written."""
    return _sha256_json({k: v for k, v in manifest.items() if k != "created"})


def dataset_fingerprint(source, cfg) -> dict:
    """The training data of a run: a dataset directory's manifest hash, or the synthetic stream's
    seed; a directory mixed with fresh sections (data.synth_mix) names both."""
    if source.is_synth:
        return {"kind": "synth-stream", "seed": source.seed, "per_epoch": cfg.data.synth_per_epoch}
    from layoutray import storage
    from layoutray.data.dataset import read_manifest

    manifest = read_manifest(source.path)
    out = {"kind": "dataset", "path": storage.absolute(source.path), "manifest_sha256": manifest_fingerprint(manifest),
           "examples": manifest.get("total")}
    if cfg.data.synth_mix:
        out["synth_mix"] = {"share": cfg.data.synth_mix, "seed": cfg.training.seed}
    return out


def git_commit(repo_root: str | Path | None = None) -> dict:
    """{"commit": sha or None, "dirty": bool or None}: LAYOUTRAY_GIT_COMMIT, else `git` in repo_root."""
    if os.environ.get(COMMIT_ENV):
        return {"commit": os.environ[COMMIT_ENV], "dirty": None}
    if repo_root is None:
        from layoutray.config import REPO_ROOT
        repo_root = REPO_ROOT

    def git(*args: str) -> str | None:
        try:
            r = subprocess.run(["git", *args], cwd=repo_root, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return r.stdout if r.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit.strip(), "dirty": None if status is None else bool(status.strip())}


def weights_sha256(model_dir: str | Path) -> str:
    from layoutray.model.artifact import WEIGHTS_FILE

    h = hashlib.sha256()
    with open(Path(model_dir) / WEIGHTS_FILE, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def parent_model(model_dir: str | Path) -> dict:
    """The artifact a model started from (--init-from) or was grown from (upgrade)."""
    from layoutray.model.artifact import META_FILE, fetch_artifact

    local = fetch_artifact(model_dir)
    meta = json.loads((Path(local) / META_FILE).read_text())
    theirs = meta.get("lineage") or {}
    return {"path": str(model_dir), "weights_sha256": weights_sha256(local), "phase": meta.get("phase"),
            "config_hash": theirs.get("config_hash"), "tracking_run_id": theirs.get("tracking_run_id")}


def training_lineage(cfg, source, init_from: str | None, run_id: str | None) -> dict:
    """What a training run's exports record; built in the driver, before the workers start."""
    return {"config_hash": config_hash(cfg), "data": dataset_fingerprint(source, cfg), "code": git_commit(),
            "parent": parent_model(init_from) if init_from else None, "tracking_run_id": run_id}


def complete(lineage: dict | None, cfg) -> dict:
    """`lineage` with the fields every artifact has filled in (the config hash for this config and
    the code's commit, unless given); data, parent and run stay null when nobody said."""
    out = {"config_hash": None, "data": None, "code": None, "parent": None, "tracking_run_id": None,
           **(lineage or {})}
    out["config_hash"] = config_hash(cfg)
    if out["code"] is None:
        out["code"] = git_commit()
    return out


def read_meta(model_dir: str | Path) -> dict:
    """An artifact's meta.json (a directory or an object-storage URI) without loading its weights."""
    from layoutray import storage
    from layoutray.config import ConfigError

    path = storage.join(model_dir, "meta.json")
    try:
        return json.loads(storage.read_text(path) if storage.is_uri(model_dir) else Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError("model", f"{path}: missing (is {model_dir} a model directory?)") from None
    except ValueError as e:
        raise ConfigError("model", f"{path}: not valid JSON ({e})") from None


def format_meta(model: str, meta: dict) -> list[str]:
    """`layoutray model show`: what the artifact is, what its export recorded, and its lineage."""
    extra = meta.get("metadata") or {}
    golden = meta.get("golden") or {}
    shown = {k: v for k, v in extra.items() if isinstance(v, (str, int, float, bool)) and k != "parent"}
    lines = [f"model:     {model}",
             f"phase:     {meta.get('phase')} ({meta.get('parameters', 0):,} parameters), "
             f"decoder {meta.get('decoder', 'autoregressive')}",
             f"format:    {meta.get('format_version')} (layoutray {meta.get('layoutray_version')}); "
             f"golden set: {golden.get('requests', 0)} requests"]
    if shown:
        lines.append("metadata:  " + ", ".join(f"{k} {v}" for k, v in shown.items()))
    return lines + format_lineage(meta.get("lineage"))


def _short(v: Any) -> str:
    return str(v)[:_SHORT] if v else "-"


def _data_line(data: dict | None) -> str:
    if not data:
        return "-"
    if data.get("kind") == "synth-stream":
        return f"synthetic stream, seed {data.get('seed')} ({data.get('per_epoch')} sections per epoch)"
    line = f"{data.get('path')} (manifest {_short(data.get('manifest_sha256'))}, {data.get('examples')} examples)"
    mix = data.get("synth_mix")
    return line + (f" + fresh synthetic share {mix['share']} (seed {mix['seed']})" if mix else "")


def format_lineage(lineage: dict | None) -> list[str]:
    """Lines for `layoutray model show`."""
    if not lineage:
        return ["lineage:  none recorded (exported before lineage was written)"]
    code = lineage.get("code") or {}
    dirty = {True: " (uncommitted changes)", False: "", None: ""}[code.get("dirty")]
    parent = lineage.get("parent")
    parent_s = (f"{parent.get('path')} ({parent.get('phase')}, weights {_short(parent.get('weights_sha256'))}"
                + (f", run {parent['tracking_run_id']}" if parent.get("tracking_run_id") else "") + ")"
                if parent else "none (trained from scratch)")
    return ["lineage:",
            f"  data:          {_data_line(lineage.get('data'))}",
            f"  config hash:   {_short(lineage.get('config_hash'))}",
            f"  code:          {code.get('commit') or 'unknown'}{dirty}",
            f"  parent model:  {parent_s}",
            f"  tracking run:  {lineage.get('tracking_run_id') or 'none'}"]
