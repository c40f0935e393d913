"""layoutray.tracking without a server: the --tracking flag, the config key, MLflow-safe names and
values, registry references, the promotion's alias choice, and the errors a user sees. The
tracking server itself is exercised in tests/ops/test_mlflow.py."""

import pytest

from conftest import free_port
from layoutray.config import ConfigError, TrackingConfig, load_config
from layoutray.tracking import (ModelRef, TrackedRun, TrackingError, check_reachable, flat_params, lineage_tags,
                                metric_key, numeric_metrics, parse_model_ref, server_uri, tracking_from_flag,
                                tracking_overrides, trial_tracking)
from serving.rollout import RolloutState, promotion_alias


def test_tracking_flag_becomes_config_overrides():
    assert tracking_overrides(None) == []
    assert tracking_overrides("tensorboard") == ["tracking.backend=tensorboard"]
    assert tracking_overrides("mlflow") == ["tracking.backend=mlflow"]
    cfg = load_config(phase="phase1", overrides=tracking_overrides("mlflow:http://127.0.0.1:5000/x"))
    assert cfg.tracking.backend == "mlflow" and cfg.tracking.uri == "http://127.0.0.1:5000/x"
    assert load_config(phase="phase1").tracking == TrackingConfig()  # TensorBoard only by default
    for bad in ("wandb", "mlflow2:x", "tensorboard:x"):
        with pytest.raises(ConfigError, match="--tracking.*tensorboard, mlflow or mlflow:URI"):
            tracking_overrides(bad)


def test_config_refuses_credentials_in_the_uri_and_unknown_backends():
    with pytest.raises(ConfigError, match="tracking.uri.*without credentials.*MLFLOW_TRACKING_USERNAME"):
        load_config(phase="phase1", overrides=['tracking.uri="http://me:secret@host:5000"'])
    with pytest.raises(ConfigError, match="tracking.backend.*allowed: 'tensorboard', 'mlflow'"):
        load_config(phase="phase1", overrides=["tracking.backend=neptune"])
    with pytest.raises(ConfigError, match="unknown key.*backend, uri, experiment, registered_model"):
        load_config(phase="phase1", overrides=["tracking.server=x"])
    assert tracking_from_flag("mlflow:sqlite:///x.db").uri == "sqlite:///x.db"


def test_server_uri_comes_from_the_config_or_the_environment(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(TrackingError, match="needs a server.*--tracking mlflow:URI.*MLFLOW_TRACKING_URI"):
        server_uri("")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    assert server_uri("") == "http://127.0.0.1:1" and server_uri("http://h:2") == "http://h:2"


def test_an_unreachable_server_is_named_at_once():
    port = free_port()  # nothing listens there
    with pytest.raises(TrackingError, match=f"cannot reach the MLflow tracking server at http://127.0.0.1:{port}"):
        check_reachable(f"http://127.0.0.1:{port}", timeout_s=5)
    cfg = TrackingConfig(backend="mlflow", uri=f"http://127.0.0.1:{port}")
    with pytest.raises(TrackingError, match="cannot reach"):
        TrackedRun.open(cfg, "run", "/runs/x")


def test_an_unreachable_server_fails_the_train_command_in_one_line(capsys, tmp_path):
    from trainables.train import main

    port = free_port()
    code = main(["--data", "synth:1", "--phase", "phase1", "--output", str(tmp_path), "--name", "x",
                 "--tracking", f"mlflow:http://127.0.0.1:{port}"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "cannot reach the MLflow tracking server" in err
    assert "Traceback" not in err


def test_metric_keys_and_values_fit_mlflow():
    assert metric_key("val_element_f1@0.5") == "val_element_f1_at_0.5"
    assert metric_key("a:b/c d") == "a_b/c d"
    row = {"epoch": 2, "val_loss": 1.5, "early_stop": False, "note": "x", "nan": float("nan"),
           "element_f1@0.75": 0.25}
    assert numeric_metrics(row, "test_") == {"test_epoch": 2.0, "test_val_loss": 1.5,
                                             "test_element_f1_at_0.75": 0.25}


def test_params_are_the_flattened_config():
    cfg = load_config(phase="phase1", overrides=["model.d_model=64"])
    params = flat_params(cfg.to_dict())
    assert params["model.d_model"] == "64" and params["training.task_mix.both"] == "0.5"
    assert params["model.aesthetics.container_types"] == '["card", "image"]'  # lists as JSON
    assert all(len(v) <= 6000 for v in flat_params({"x": "y" * 7000}).values())


def test_lineage_becomes_run_tags():
    tags = lineage_tags({"config_hash": "abc", "code": {"commit": "c0ffee", "dirty": False},
                         "data": {"kind": "synth-stream", "seed": 3}, "parent": None, "tracking_run_id": None})
    assert tags == {"layoutray.config_hash": "abc", "mlflow.source.git.commit": "c0ffee",
                    "layoutray.data": '{"kind": "synth-stream", "seed": 3}'}


def test_sweep_trials_are_child_runs_that_are_never_registered():
    cfg = load_config(phase="phase1")
    trial = {"uri": "http://127.0.0.1:1", "experiment": "sweeps", "parent_run_id": "p123"}
    tcfg, tags = trial_tracking(trial, cfg, "phi", 2, 0.001)
    assert tcfg.tracking == TrackingConfig(backend="mlflow", uri="http://127.0.0.1:1", experiment="sweeps",
                                           registered_model="")
    assert tags["mlflow.parentRunId"] == "p123" and tags["layoutray.arm"] == "phi"
    assert tcfg.model == cfg.model  # only tracking changes


def test_registry_references():
    assert parse_model_ref("models:/layouts@champion") == ModelRef("layouts", alias="champion")
    assert parse_model_ref("models:/layouts/7") == ModelRef("layouts", version="7")
    assert str(ModelRef("m", alias="a")) == "models:/m@a" and str(ModelRef("m", version="3")) == "models:/m/3"
    for bad in ("models:/", "models:/m", "models:/m/latest", "models:/m@", "models:/a/b/c"):
        with pytest.raises(TrackingError, match="models:/NAME@ALIAS or models:/NAME/VERSION"):
            parse_model_ref(bad)


def test_a_promotion_moves_the_old_stable_alias_to_the_new_stable_version():
    # after promote(): the canary's slot (green) is stable, the old stable (blue) canary
    st = RolloutState(stable="green", canary="blue",
                      registry={"blue": {"name": "layouts", "version": "1", "alias": "prod"},
                                "green": {"name": "layouts", "version": "2", "alias": None}})
    assert promotion_alias(st, "champion") == ("layouts", "prod", "2")
    st.registry["blue"] = {"name": "layouts", "version": "1", "alias": None}  # served as models:/layouts/1
    assert promotion_alias(st, "champion") == ("layouts", "champion", "2")
    del st.registry["green"]  # the new stable model is a plain directory: the registry is left alone
    assert promotion_alias(st, "champion") is None

