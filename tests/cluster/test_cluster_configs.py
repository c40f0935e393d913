"""Cluster configs are valid for the tools that read them, checked without a cloud or Kubernetes.

- cluster/aws-a100.yaml: Ray 2.60.0's own cluster-config schema (ray/autoscaler/ray-schema.json,
  shipped in the installed ray package) and Ray's validate_config after prepare_config (what
  `ray up` runs before it touches AWS).
- cluster/kuberay/*.yaml: the fields of the pinned KubeRay CRDs (v1.4.2), vendored as a small JSON
  Schema subset in tests/cluster/fixtures/kuberay_v1.4.2_fields.json (its header names the
  source files), plus the Serve config inside the RayService against Ray Serve's own schema and
  against configs/serve.yaml.
- cluster/runtime_env.yaml: Ray's RuntimeEnv accepts it, and Ray's own packaging code, given its
  excludes, leaves .venv, runs, sections, .git and caches out of the uploaded working dir.
"""

from __future__ import annotations

import copy
import json
import zipfile
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"
FIXTURES = Path(__file__).parent / "fixtures"


def _load(path: Path):
    return yaml.safe_load(path.read_text())


# ---------------------------------------------------------------------------- launcher


@pytest.fixture(scope="module")
def ray_schema() -> dict:
    import ray.autoscaler

    path = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
    return json.loads(path.read_text())


def test_launcher_valid_against_ray_schema(ray_schema):
    cfg = _load(CLUSTER / "aws-a100.yaml")
    jsonschema.validate(cfg, ray_schema)


def test_launcher_passes_ray_validate_config():
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(_load(CLUSTER / "aws-a100.yaml")))
    validate_config(prepared)
    assert prepared["head_node_type"] in prepared["available_node_types"]


def test_launcher_shape():
    cfg = _load(CLUSTER / "aws-a100.yaml")
    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]
    assert head["resources"].get("CPU") == 0, "no training on the head"
    workers = [t for name, t in types.items() if name != cfg["head_node_type"]]
    assert any(t["node_config"]["InstanceType"] in ("p4d.24xlarge", "p4de.24xlarge") for t in workers)
    for t in workers:
        assert 0 <= t["min_workers"] <= t["max_workers"] <= cfg["max_workers"]
    assert cfg["provider"]["type"] == "aws"
    # the project's image, and the one install recipe on every node
    assert "layoutray" in cfg["docker"]["worker_image"] and "layoutray" in cfg["docker"]["head_image"]
    assert any("scripts/install.sh" in c and "VENV=none" in c for c in cfg["setup_commands"])
    assert ".venv" in cfg["rsync_exclude"] and "runs" in cfg["rsync_exclude"]


def test_schema_rejects_a_typo(ray_schema):
    """The check has teeth: a misspelt top-level key fails Ray's schema."""
    cfg = _load(CLUSTER / "aws-a100.yaml")
    cfg["max_worker"] = cfg.pop("max_workers")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(cfg, ray_schema)


# ---------------------------------------------------------------------------- KubeRay


@pytest.fixture(scope="module")
def crd() -> dict:
    return json.loads((FIXTURES / "kuberay_v1.4.2_fields.json").read_text())


def _validator(crd: dict, kind: str) -> jsonschema.Draft7Validator:
    schema = dict(crd[kind], definitions=crd["definitions"])
    return jsonschema.Draft7Validator(schema)


@pytest.mark.parametrize("name,kind", [("rayjob-phase4.yaml", "RayJob"), ("rayservice.yaml", "RayService")])
def test_kuberay_manifest_matches_pinned_crd(crd, name, kind):
    doc = _load(CLUSTER / "kuberay" / name)
    errors = sorted(_validator(crd, kind).iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)
    assert "v1.4.2" in (CLUSTER / "kuberay" / name).read_text(), "the manifest names its KubeRay version"


def test_kuberay_check_rejects_unknown_field_and_non_string_start_params(crd):
    doc = _load(CLUSTER / "kuberay" / "rayjob-phase4.yaml")
    bad = copy.deepcopy(doc)
    bad["spec"]["shutdownAfterJobFinish"] = True  # typo
    assert list(_validator(crd, "RayJob").iter_errors(bad))
    bad = copy.deepcopy(doc)
    bad["spec"]["rayClusterSpec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0  # must be "0"
    assert list(_validator(crd, "RayJob").iter_errors(bad))


def test_rayjob_runs_phase4_with_the_runtime_env_of_ray_job_submit():
    spec = _load(CLUSTER / "kuberay" / "rayjob-phase4.yaml")["spec"]
    assert spec["entrypoint"].startswith("python -m trainables.train ")
    assert "--phase phase4" in spec["entrypoint"] and "--data " in spec["entrypoint"]
    env = yaml.safe_load(spec["runtimeEnvYAML"])["env_vars"]
    assert env == _load(CLUSTER / "runtime_env.yaml")["env_vars"]
    assert spec["rayClusterSpec"]["rayVersion"] == "2.60.0"
    gpus = sum(int(g["replicas"]) * int(c["resources"]["limits"].get("nvidia.com/gpu", 0))
               for g in spec["rayClusterSpec"]["workerGroupSpecs"] for c in g["template"]["spec"]["containers"])
    phase4 = _load(ROOT / "configs" / "phases" / "phase4.yaml")["scaling"]
    assert gpus == phase4["num_workers"] * phase4["gpus_per_worker"]


def test_rayservice_serve_config_is_valid_and_matches_configs_serve_yaml():
    from ray.serve.schema import ServeDeploySchema

    rs = _load(CLUSTER / "kuberay" / "rayservice.yaml")
    ours = yaml.safe_load(rs["spec"]["serveConfigV2"])
    ServeDeploySchema.model_validate(ours)  # Ray Serve's own schema for serve deploy configs
    ref_path = ROOT / "configs" / "serve.yaml"
    if not ref_path.exists():
        pytest.skip("configs/serve.yaml not written yet")
    ref = _load(ref_path)

    def apps(cfg):
        return {a["name"]: a for a in cfg["applications"]}

    assert apps(ours).keys() == apps(ref).keys()
    for name, app in apps(ours).items():
        r = apps(ref)[name]
        assert app["import_path"] == r["import_path"] == "serving.app:app"
        assert app.get("route_prefix") == r.get("route_prefix")
        mine = {d["name"]: d.get("user_config") for d in app["deployments"]}
        theirs = {d["name"]: d.get("user_config") for d in r["deployments"]}
        assert mine == theirs, ("cluster/kuberay/rayservice.yaml serveConfigV2 drifted from "
                                "configs/serve.yaml: copy the deployments' user_config over")
    assert "http_options" not in ours, "KubeRay owns the Serve port on Kubernetes"


# ---------------------------------------------------------------------------- runtime env


def test_runtime_env_accepted_by_ray():
    from ray.runtime_env import RuntimeEnv

    env = _load(CLUSTER / "runtime_env.yaml")
    RuntimeEnv(**env)  # raises on unknown fields or wrong types
    assert set(env) <= {"excludes", "env_vars"}, "nothing installed per job: the cluster's Python has it"
    assert all(isinstance(v, str) for v in env["env_vars"].values())
    assert "OMP_NUM_THREADS" not in env["env_vars"], "Ray sets it per worker from its CPU reservation"


def test_runtime_env_excludes_with_rays_packaging(tmp_path):
    from ray._private.runtime_env.packaging import _zip_files

    tree = tmp_path / "repo"
    files = ["cli/main.py", "trainables/train.py", "configs/phases/phase1.yaml", "pyproject.toml",
             ".venv/bin/python", ".venv/lib/site.py", "runs/r1/model/weights.safetensors",
             "sections/train/part-0.parquet", ".git/HEAD", "layoutray/__pycache__/cli.cpython-311.pyc",
             ".pytest_cache/v/x", "layoutray.egg-info/PKG-INFO"]
    for f in files:
        (tree / f).parent.mkdir(parents=True, exist_ok=True)
        (tree / f).write_text("x")
    out = tmp_path / "pkg.zip"
    _zip_files(str(tree), _load(CLUSTER / "runtime_env.yaml")["excludes"], str(out), include_gitignore=False)
    names = {n for n in zipfile.ZipFile(out).namelist() if not n.endswith("/")}
    assert names == {"cli/main.py", "trainables/train.py", "configs/phases/phase1.yaml", "pyproject.toml"}
