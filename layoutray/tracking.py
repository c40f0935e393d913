"""MLflow tracking and model registry, beside the always-written metrics.jsonl and TensorBoard.

    layoutray train --data sections --tracking mlflow:http://127.0.0.1:5000
    layoutray evaluate --model runs/x/model --data sections --tracking mlflow     # MLFLOW_TRACKING_URI
    layoutray sweep --config configs/sweeps/phi_vs_baseline_small.yaml --tracking mlflow:http://...

A training run is one MLflow run: the resolved config as params (flattened, tracking settings
left out) and as `config.yaml`, the lineage as tags, one metric row per epoch (logged by a Ray Train
`UserCallback` on the Train controller, so the per-worker loop never imports MLflow), then
`model/` and `metrics.json` as artifacts; the finished model becomes a version of the registered
model `tracking.registered_model`. `--resume` continues the same MLflow run (found by its
`layoutray.run` tag). A sweep is a parent run with one child run per trial. The MLflow client is
used directly: Ray's `MLflowLoggerCallback` logs a Tune trial's config and results, but neither
the resolved run config nor artifacts nor registry versions, and one HTTP call per metric.

Serving takes `models:/NAME@ALIAS` or `models:/NAME/VERSION` wherever it takes a model directory
(`resolve_model_ref`); a promotion moves the alias (`move_alias`). The server is
`tracking.uri`, else the `MLFLOW_TRACKING_URI` environment variable; credentials come from MLflow's
own environment variables, never from the URI (TrackingConfig refuses them there).
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layoutray.config import ConfigError

URI_ENV = "MLFLOW_TRACKING_URI"
RUN_TAG = "layoutray.run"  # where the run's directory is: how --resume finds its MLflow run again
REF_PREFIX = "models:/"
_MAX_PARAM = 6000  # MLflow's longest param value
_BATCH = 100  # params per log_batch call (MLflow's limit)
logger = logging.getLogger(__name__)


class TrackingError(ConfigError):
    """The tracking server or a registry reference cannot be used; the message says which and why."""

    def __init__(self, problem: str, key: str = "tracking.uri"):
        super().__init__(key, problem)


# ---------------------------------------------------------------------------- settings


def tracking_overrides(text: str | None) -> list[str]:
    """`--tracking tensorboard | mlflow | mlflow:URI` as the config overrides it stands for."""
    if not text:
        return []
    backend, _, uri = text.partition(":")
    if backend == "tensorboard" and not uri:
        return ["tracking.backend=tensorboard"]
    if backend != "mlflow":
        raise ConfigError("--tracking", f"expected tensorboard, mlflow or mlflow:URI (e.g. "
                                        f"mlflow:http://127.0.0.1:5000); got {text!r}")
    return ["tracking.backend=mlflow"] + ([f"tracking.uri={json.dumps(uri)}"] if uri else [])


def tracking_from_flag(text: str | None):
    """The TrackingConfig a `--tracking` flag alone gives (evaluate and sweep have no run config)."""
    from layoutray.config import TrackingConfig, load_config

    if not text:
        return TrackingConfig()
    return load_config(phase="phase1", overrides=tracking_overrides(text)).tracking


def server_uri(uri: str = "") -> str:
    """`uri`, else MLFLOW_TRACKING_URI; a TrackingError when neither names a server."""
    uri = uri or os.environ.get(URI_ENV, "")
    if not uri:
        raise TrackingError(f"MLflow tracking needs a server: pass --tracking mlflow:URI (e.g. "
                            f"mlflow:http://127.0.0.1:5000), set tracking.uri, or set {URI_ENV}")
    return uri


def check_reachable(uri: str, timeout_s: float = 10.0) -> None:
    """Fail now, naming the server, rather than after MLflow's client has retried for minutes."""
    if not uri.startswith(("http://", "https://")):
        return  # a local store (file:, sqlite:) opens when used
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s) as r:
            r.read()
    except urllib.error.HTTPError:
        return  # it answered: a proxy in front may not route /health
    except (urllib.error.URLError, OSError) as e:
        raise TrackingError(f"cannot reach the MLflow tracking server at {uri}: "
                            f"{getattr(e, 'reason', e)}") from None


def client(uri: str):
    # MLflow writes "View run ... at: URL" to stdout when a run ends, which would break the JSON
    # that `evaluate --json` prints; the commands name the run themselves.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


# ---------------------------------------------------------------------------- values


def metric_key(key: str) -> str:
    """MLflow keys allow letters, digits, `_-. /`: `val_element_f1@0.5` -> `val_element_f1_at_0.5`."""
    return re.sub(r"[^\w\-. /]", "_", key.replace("@", "_at_"))


def numeric_metrics(row: dict, prefix: str = "") -> dict[str, float]:
    """The finite numbers of a metrics dict (booleans and text left out), keys made MLflow-safe."""
    import math

    return {metric_key(prefix + k): float(v) for k, v in row.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def flat_params(tree: dict, prefix: str = "") -> dict[str, str]:
    """A nested dict as dotted keys with text values (lists as JSON), each at most 6000 characters."""
    out: dict[str, str] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flat_params(v, key + "."))
        else:
            out[metric_key(key)] = (json.dumps(v) if isinstance(v, (list, tuple)) else str(v))[:_MAX_PARAM]
    return out


def lineage_tags(lineage: dict) -> dict[str, str]:
    """Lineage as run tags (MLflow's own git tag for the commit)."""
    data, code, parent = lineage.get("data") or {}, lineage.get("code") or {}, lineage.get("parent") or {}
    tags = {"layoutray.config_hash": lineage.get("config_hash"), "layoutray.data": json.dumps(data, sort_keys=True),
            "mlflow.source.git.commit": code.get("commit"), "layoutray.parent_model": parent.get("path"),
            "layoutray.parent_run_id": parent.get("tracking_run_id")}
    return {k: str(v) for k, v in tags.items() if v}


def log_batch(c, run_id: str, metrics: dict[str, float] | None = None, params: dict[str, str] | None = None,
              tags: dict[str, str] | None = None, step: int = 0) -> None:
    from mlflow.entities import Metric, Param, RunTag

    now = int(time.time() * 1000)
    ms = [Metric(k, v, now, step) for k, v in (metrics or {}).items()]
    ps = [Param(k, v) for k, v in (params or {}).items()]
    ts = [RunTag(k, v) for k, v in (tags or {}).items()]
    for i in range(0, max(len(ms), len(ps), len(ts), 1), _BATCH):
        c.log_batch(run_id, metrics=ms[i:i + _BATCH], params=ps[i:i + _BATCH], tags=ts[i:i + _BATCH])


def experiment_id(c, name: str) -> str:
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    from mlflow.exceptions import MlflowException

    try:
        return c.create_experiment(name)
    except MlflowException:  # created meanwhile by a concurrent run (sweep trials)
        return c.get_experiment_by_name(name).experiment_id


# ---------------------------------------------------------------------------- training runs


@dataclass
class TrackedRun:
    """One MLflow run driven from the driver process (training, evaluation or a sweep)."""

    uri: str
    run_id: str
    registered_model: str = ""

    @classmethod
    def open(cls, tracking, run_name: str, where: str, tags: dict | None = None, resume: bool = False) -> "TrackedRun":
        """A new run in `tracking.experiment`, or with `resume` the newest one tagged with `where`."""
        uri = server_uri(tracking.uri)
        check_reachable(uri)
        c = client(uri)
        exp = experiment_id(c, tracking.experiment)
        quoted = where.replace("\\", "\\\\").replace("'", "\\'")
        found = c.search_runs([exp], filter_string=f"tags.`{RUN_TAG}` = '{quoted}'", max_results=1,
                              order_by=["attributes.start_time DESC"]) if resume else []
        if found:
            run_id = found[0].info.run_id
            c.update_run(run_id, status="RUNNING")
        else:
            run_id = c.create_run(exp, run_name=run_name, tags={RUN_TAG: where, **(tags or {})}).info.run_id
        return cls(uri, run_id, tracking.registered_model)

    def log_config(self, cfg, lineage: dict | None = None) -> None:
        """The resolved config as params and config.yaml; the lineage as tags."""
        from layoutray.config import dump_yaml

        tree = cfg.to_dict()
        tree.pop("tracking", None)
        c = client(self.uri)
        existing = c.get_run(self.run_id).data.params  # a resumed run: params are write-once
        params = {k: v for k, v in flat_params(tree).items() if k not in existing}
        log_batch(c, self.run_id, params=params, tags=lineage_tags(lineage or {}))
        c.log_text(self.run_id, dump_yaml(cfg), "config.yaml")

    def log_metrics(self, row: dict, step: int = 0, prefix: str = "") -> None:
        log_batch(client(self.uri), self.run_id, metrics=numeric_metrics(row, prefix), step=step)

    def log_path(self, path: str | Path, artifact_path: str | None = None) -> None:
        c, path = client(self.uri), Path(path)
        if path.is_dir():
            c.log_artifacts(self.run_id, str(path), artifact_path)
        elif path.is_file():
            c.log_artifact(self.run_id, str(path), artifact_path)

    def register(self, artifact_path: str = "model") -> dict | None:
        """The run's `artifact_path` as a new version of the registered model (None: not registering)."""
        if not self.registered_model:
            return None
        from mlflow.exceptions import MlflowException

        c = client(self.uri)
        try:
            c.create_registered_model(self.registered_model)
        except MlflowException as e:
            if e.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        mv = c.create_model_version(self.registered_model, f"runs:/{self.run_id}/{artifact_path}", run_id=self.run_id)
        return {"name": self.registered_model, "version": str(mv.version),
                "ref": f"{REF_PREFIX}{self.registered_model}/{mv.version}"}

    def end(self, ok: bool = True) -> None:
        client(self.uri).set_terminated(self.run_id, status="FINISHED" if ok else "FAILED")

    def epoch_callback(self):
        """A Ray Train callback that logs each epoch's report (rank 0's row) as metrics at step=epoch."""
        return _callback_class()(self.uri, self.run_id)


_CALLBACK = None


def _callback_class():
    """Built on first use: the class subclasses ray.train.UserCallback, and importing Ray Train
    only for `layoutray evaluate --tracking` would cost seconds."""
    global _CALLBACK
    if _CALLBACK is None:
        import ray.train

        class MlflowEpochs(ray.train.UserCallback):
            def __init__(self, uri: str, run_id: str):
                self.uri, self.run_id = uri, run_id

            def after_report(self, run_context, metrics: list, checkpoint) -> None:
                row = metrics[0] if metrics else {}
                try:  # a tracking hiccup must not stop the training run
                    log_batch(client(self.uri), self.run_id, metrics=numeric_metrics(row),
                              step=int(row.get("epoch", 0)))
                except Exception as e:  # noqa: BLE001
                    logger.warning("MLflow: could not log epoch %s to %s: %s", row.get("epoch"), self.uri, e)

        _CALLBACK = MlflowEpochs
    return _CALLBACK


class TrainingTracker:
    """What the training driver calls: nothing at all unless tracking.backend is mlflow."""

    def __init__(self, run: TrackedRun | None = None):
        self.run = run

    @classmethod
    def start(cls, cfg, name: str, where: str, tags: dict | None = None, resume: bool = False) -> "TrainingTracker":
        if cfg.tracking.backend != "mlflow":
            return cls()
        return cls(TrackedRun.open(cfg.tracking, name, where, {"layoutray.phase": cfg.phase, **(tags or {})},
                                   resume))

    @property
    def run_id(self) -> str | None:
        return self.run.run_id if self.run else None

    def callbacks(self) -> list:
        return [self.run.epoch_callback()] if self.run else []

    def begin(self, cfg, lineage: dict) -> None:
        if self.run:
            self.run.log_config(cfg, lineage)

    def finish(self, run_dir: str | Path, summary: dict) -> None:
        """Artifacts (model/, metrics.json), test metrics, the registry version; the run ends."""
        if not self.run:
            return
        run_dir = Path(run_dir)
        self.run.log_path(run_dir / "model", "model")
        self.run.log_path(run_dir / "metrics.json")
        if summary.get("test"):
            self.run.log_metrics(summary["test"], prefix="test_")
        registered = self.run.register("model")
        summary["tracking"] = {"uri": self.run.uri, "run_id": self.run.run_id, "registered": registered}
        self.run.end(ok=True)

    def guard(self, fn, *args):
        """`fn(*args)`; the run is marked failed when it raises or returns a Train result with an error."""
        try:
            out = fn(*args)
        except BaseException:
            self.failed()
            raise
        if getattr(out, "error", None) is not None:
            self.failed()
        return out

    def failed(self) -> None:
        if self.run:
            try:
                self.run.end(ok=False)
            except Exception as e:  # noqa: BLE001 - the training error is the one to report
                logger.warning("MLflow: could not mark run %s failed: %s", self.run.run_id, e)


def start_training(cfg, source, init_from: str | None, name: str, where: str, resume: bool = False,
                   tags: dict | None = None) -> tuple[TrainingTracker, dict]:
    """(tracker, lineage) of a training run: the MLflow run opened (with mlflow) before the lineage
    is built, since the lineage names it; the config and lineage logged to it."""
    from layoutray.lineage import training_lineage

    tracker = TrainingTracker.start(cfg, name, where, tags, resume)
    lineage = training_lineage(cfg, source, init_from, tracker.run_id)
    tracker.begin(cfg, lineage)
    return tracker, lineage


# ---------------------------------------------------------------------------- evaluation and sweeps


def log_evaluation(tracking, model: str, data: str, split: str, metrics: dict, params: dict | None = None,
                   model_dir: str | None = None) -> dict:
    """An evaluation as its own run: what was scored (params, the model's lineage as tags), the
    numbers (metrics) and the whole result (metrics.json). `model_dir`: where the model named
    `model` (a models:/ reference) was fetched to."""
    lineage = _model_lineage(model_dir or model)
    tags = {"layoutray.kind": "evaluation", "layoutray.model": str(model), **lineage_tags(lineage)}
    if lineage.get("tracking_run_id"):
        tags["layoutray.model_run_id"] = lineage["tracking_run_id"]
    run = TrackedRun.open(tracking, f"evaluate {Path(str(model)).parent.name or model} on {split}",
                          f"evaluate:{model}:{data}:{split}", tags)
    c = client(run.uri)
    log_batch(c, run.run_id, params=flat_params({"model": model, "data": data, "split": split, **(params or {})}))
    run.log_metrics(metrics)
    c.log_text(run.run_id, json.dumps(metrics, indent=2, default=str) + "\n", "metrics.json")
    run.end(ok=True)
    return {"uri": run.uri, "run_id": run.run_id}


def _model_lineage(model: str) -> dict:
    meta = Path(str(model)) / "meta.json"
    try:
        return json.loads(meta.read_text()).get("lineage") or {}
    except (OSError, ValueError):
        return {}  # a URI or an older artifact: the evaluation is still logged


def trial_tracking(trial: dict, cfg, arm: str, seed: int, lr) -> tuple[Any, dict]:
    """(run config, run tags) for one sweep trial: a child run of the sweep's, never registered."""
    import dataclasses

    from layoutray.config import TrackingConfig

    cfg = dataclasses.replace(cfg, tracking=TrackingConfig(backend="mlflow", uri=trial["uri"],
                                                           experiment=trial["experiment"], registered_model=""))
    tags = {"mlflow.parentRunId": trial["parent_run_id"], "layoutray.arm": arm, "layoutray.seed": str(seed),
            "layoutray.lr": str(lr)}
    return cfg, tags


# ---------------------------------------------------------------------------- the registry


@dataclass(frozen=True)
class ModelRef:
    """`models:/NAME@ALIAS` or `models:/NAME/VERSION`."""

    name: str
    alias: str | None = None
    version: str | None = None

    def __str__(self) -> str:
        return f"{REF_PREFIX}{self.name}" + (f"@{self.alias}" if self.alias else f"/{self.version}")


def is_model_ref(text: Any) -> bool:
    return isinstance(text, str) and text.startswith(REF_PREFIX)


def parse_model_ref(text: str) -> ModelRef:
    m = re.fullmatch(r"models:/([^/@]+)(?:@([\w.-]+)|/(\d+))", text)
    if not m:
        raise TrackingError(f"expected models:/NAME@ALIAS or models:/NAME/VERSION; got {text!r}", "model")
    return ModelRef(m.group(1), m.group(2), m.group(3))


def resolve_model_ref(text: str, cache_root: str | Path, uri: str = "") -> tuple[str, dict]:
    """(where the artifact is, what the reference meant) for a registry reference.

    An artifact in object storage (s3://, gs://) is returned as that URI, which every replica can
    read itself; any other (the server's proxied store, a local path) is downloaded once per
    version into `cache_root/NAME/VERSION`."""
    from mlflow.exceptions import MlflowException

    ref = parse_model_ref(text)
    uri = server_uri(uri)
    check_reachable(uri)
    c = client(uri)
    try:
        mv = c.get_model_version_by_alias(ref.name, ref.alias) if ref.alias else c.get_model_version(ref.name,
                                                                                                    ref.version)
        location = c.get_model_version_download_uri(ref.name, mv.version)
    except MlflowException as e:
        raise TrackingError(f"{text}: not in the registry at {uri} ({e.message[:200]})", "model") from None
    info = {"ref": text, "name": ref.name, "version": str(mv.version), "alias": ref.alias, "run_id": mv.run_id}
    if re.match(r"^(s3|gs|gcs)://", location):
        return location, info
    return _download_version(location, Path(cache_root) / ref.name / str(mv.version), uri), info


def _download_version(location: str, dest: Path, uri: str) -> str:
    """The version's files under `dest` (a version never changes: a complete copy is reused)."""
    import shutil

    import mlflow.artifacts

    if (dest / "meta.json").is_file():
        return str(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
    got = Path(mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=str(tmp), tracking_uri=uri))
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(got, dest)  # a reader sees no directory or a whole one
    shutil.rmtree(tmp, ignore_errors=True)
    return str(dest)


def registry_cache_dir() -> Path:
    """Where registry versions are downloaded outside Serve: LAYOUTRAY_CACHE_DIR/registry, else
    ~/.cache/layoutray/registry."""
    root = os.environ.get("LAYOUTRAY_CACHE_DIR") or Path.home() / ".cache" / "layoutray"
    return Path(root) / "registry"


def move_alias(uri: str, name: str, alias: str, version: str) -> None:
    """Point `models:/NAME@ALIAS` at `version` (what a promotion does)."""
    client(server_uri(uri)).set_registered_model_alias(name, alias, str(version))


def alias_version(uri: str, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client(server_uri(uri)).get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None
