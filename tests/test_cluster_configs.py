"""The cluster configs (cluster/, serve_apps/serve_config.yaml) and the job entrypoints, checked the way Ray reads them.

Every YAML is parsed; Serve configs go through Ray Serve's own schema and application builder, the launcher config
through the autoscaler's schema and validate_config (what `ray up` runs), runtime envs through ray.runtime_env; every
import path, script and training config the configs name must exist (and the config must load with the overrides
given). Each job runs with --help. Fast and offline: nothing here starts Ray.
"""

import ast
import copy
import importlib
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import ray
import yaml

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "cluster"
SERVE_CONFIG = REPO / "serve_apps" / "serve_config.yaml"
JOBS = sorted(p for p in (REPO / "jobs").glob("*.py") if not p.name.startswith("_"))
# names of code in a runtime_env: the only part of an application allowed to differ between serve_config.yaml and
# the RayService (k8s pods have no checkout, so there the code is a remote zip URI)
CODE_KEYS = ("working_dir", "py_modules", "pip")


def _yaml_files() -> list[Path]:
    return sorted(CLUSTER.rglob("*.yaml")) + [SERVE_CONFIG]


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def _kuberay(kind: str) -> dict:
    found = [doc for p in CLUSTER.rglob("*.yaml") if isinstance(doc := _load(p), dict) and doc.get("kind") == kind]
    assert found, f"no {kind} in {CLUSTER}"
    return found[0]


def _serve_config_v2() -> dict:
    return yaml.safe_load(_kuberay("RayService")["spec"]["serveConfigV2"])


def _without_code(serve_config: dict) -> dict:
    out = copy.deepcopy(serve_config)
    for app in out["applications"]:
        env = {k: v for k, v in app.pop("runtime_env", {}).items() if k not in CODE_KEYS}
        if env:
            app["runtime_env"] = env
    return out


def _repo_paths(text: str) -> set[str]:
    """Scripts and configs a config names by repository-relative path (jobs/..., serve_apps/..., cluster/...)."""
    return set(re.findall(r"(?<![\w/.-])((?:jobs|serve_apps|cluster)/[\w./-]+\.(?:py|ya?ml))", text))


def _containers(pod_group: dict) -> list[dict]:
    return pod_group["template"]["spec"]["containers"]


@pytest.mark.parametrize("path", _yaml_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_yaml_parses_and_names_only_files_that_exist(path):
    doc = _load(path)
    assert isinstance(doc, dict) and doc, f"{path}: expected a non-empty mapping"
    missing = sorted(p for p in _repo_paths(path.read_text()) if not (REPO / p).is_file())
    assert not missing, f"{path.relative_to(REPO)} names files that are not in the repository: {missing}"


# --- Ray job submission -----------------------------------------------------------------------------------------

def test_runtime_env_ships_the_project():
    from ray.runtime_env import RuntimeEnv

    env = _load(CLUSTER / "runtime_env.yaml")
    RuntimeEnv(**env)  # Ray's own validation of the fields
    assert env["working_dir"] == "."
    for module in env["py_modules"]:
        assert (REPO / module / "__init__.py").is_file(), f"py_modules entry {module} is not a package in the repo"
    assert "platform/polyglot_lion" in env["py_modules"]
    # the local state that must never be uploaded (big, or a secret)
    for pattern in (".venv", ".git", ".ray_token", "runs", "demo_out", "bench_out", "mlartifacts", "*.db"):
        assert pattern in env["excludes"], f"runtime_env.yaml: excludes lacks {pattern!r}"


def test_make_submit_passes_absolute_paths_and_the_runtime_env():
    # a job's cwd is the uploaded copy, so relative paths would point into it; `make -n` runs nothing
    out = subprocess.run(["make", "-n", "-o", ".venv/.installed", "submit-train", "submit-evaluate", "submit-transcribe",
                          "STORE=some/store", "PLAN=some/plan", "RUN=r1", "MODEL=models:/m@champion"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    submits = [line for line in out.stdout.splitlines() if "ray job submit" in line]
    assert len(submits) == 3, out.stdout
    for line in submits:
        assert "RAY_AUTH_MODE=token" in line and "--runtime-env cluster/runtime_env.yaml" in line
        assert " some/" not in line and "=some/" not in line, f"a relative path reached the job: {line}"
    assert f"data.store={REPO}/some/store" in out.stdout and f"data.plan={REPO}/some/plan" in out.stdout
    assert f"tracking.uri=sqlite:///{REPO}/mlflow.db" in out.stdout
    assert "--model models:/m@champion" in out.stdout  # model URIs are passed through untouched
    for script in re.findall(r"python (jobs/\S+\.py)", out.stdout):
        assert (REPO / script).is_file(), script


@pytest.mark.parametrize("job", JOBS, ids=lambda p: p.name)
def test_job_entrypoint_help_runs_from_any_directory(job, tmp_path):
    out = subprocess.run([sys.executable, str(job), "--help"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"usage: polyglot-lion {job.stem}" in out.stdout
    doc = ast.get_docstring(ast.parse(job.read_text()))
    assert doc and "ray job submit" in doc and f"python jobs/{job.name}" in doc, \
        f"{job.name}: the docstring must show the `ray job submit ... python jobs/{job.name}` command"


# --- Ray Serve --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["serve_apps/serve_config.yaml", "RayService serveConfigV2"])
def test_serve_config_is_valid_for_serve_and_builds(which, monkeypatch):
    from ray.serve import Application
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary
    from ray.serve.schema import ServeDeploySchema

    doc = _load(SERVE_CONFIG) if which.startswith("serve_apps") else _serve_config_v2()
    schema = ServeDeploySchema.model_validate(doc)  # what `serve deploy` and KubeRay run first
    assert schema.applications
    monkeypatch.syspath_prepend(str(REPO))  # replicas import serve_apps from the working dir / PYTHONPATH
    for app in schema.applications:
        module, _, attr = app.import_path.partition(":")
        assert hasattr(importlib.import_module(module), attr), f"{which}: {module} has no {attr}"
        # Serve's own call: a builder must take exactly one argument, and ours rejects unknown args
        built = call_user_app_builder_with_args_if_necessary(getattr(importlib.import_module(module), attr), app.args)
        assert isinstance(built, Application)


def test_rayservice_serves_serve_config_yaml():
    local, k8s = _load(SERVE_CONFIG), _serve_config_v2()
    # the only allowed difference: k8s names the code by a remote URI (see the comment in rayservice.yaml)
    assert _without_code(k8s) == _without_code(local), "serveConfigV2 and serve_apps/serve_config.yaml drifted apart"
    for app in k8s["applications"]:
        assert re.match(r"^(https?|s3|gs)://", app["runtime_env"]["working_dir"]), "k8s working_dir must be remote"
    for app in local["applications"]:
        assert not set(app.get("runtime_env", {})) & set(CODE_KEYS), "local Serve configs cannot ship local folders"


# --- KubeRay ----------------------------------------------------------------------------------------------------

def _check_ray_cluster_spec(spec: dict, where: str) -> None:
    assert spec["rayVersion"] == ray.__version__, f"{where}: rayVersion {spec['rayVersion']} != ray {ray.__version__}"
    head = spec["headGroupSpec"]
    assert "rayStartParams" in head and _containers(head), f"{where}: headGroupSpec needs rayStartParams, containers"
    assert spec["workerGroupSpecs"], f"{where}: no workerGroupSpecs"
    for group in [head, *spec["workerGroupSpecs"]]:
        for c in _containers(group):
            assert c["image"].split(":")[1].startswith(ray.__version__), f"{where}: {c['image']} is not Ray {ray.__version__}"
    for group in spec["workerGroupSpecs"]:
        assert group["groupName"] and group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], group


def test_rayjob_trains_with_a_shipped_config():
    from ray.runtime_env import RuntimeEnv

    from polyglot_lion.config import load_config

    job = _kuberay("RayJob")
    assert job["apiVersion"] == "ray.io/v1" and job["metadata"]["name"]
    spec = job["spec"]
    _check_ray_cluster_spec(spec["rayClusterSpec"], "RayJob")
    gpu_groups = [g for g in spec["rayClusterSpec"]["workerGroupSpecs"]
                  if any(int(c["resources"]["limits"].get("nvidia.com/gpu", 0)) >= 1 for c in _containers(g))]
    assert gpu_groups, "RayJob: no worker group with nvidia.com/gpu limits"

    env = yaml.safe_load(spec["runtimeEnvYAML"])
    RuntimeEnv(**env)
    assert re.match(r"^(https?|s3|gs)://", env["working_dir"]), "a RayJob's working_dir must be a remote URI"

    argv = shlex.split(spec["entrypoint"])
    assert argv[:2] == ["python", "jobs/train.py"] and (REPO / argv[1]).is_file()
    config = argv[argv.index("--config") + 1]
    assert re.fullmatch(r"jobs/configs/qwen3_asr/[\w.]+_\w+_\w+\.yaml", config) and (REPO / config).is_file()
    overrides = [a for a in argv[2:] if "=" in a]
    cfg = load_config(str(REPO / config), overrides, check_paths=False)  # unknown or mistyped keys fail here
    assert cfg.scaling.use_gpu
    # every location in a bucket, no ReadWriteMany volume: pods share nothing but the bucket
    for where in (cfg.data.store, cfg.data.plan, cfg.run.output_dir):
        assert re.match(r"^(s3|gs)://[^/]+/", where), f"RayJob: {where} is not a bucket location"
    pods = [spec["rayClusterSpec"]["headGroupSpec"], *spec["rayClusterSpec"]["workerGroupSpecs"]]
    for group in pods:
        volumes = group["template"]["spec"].get("volumes", [])
        assert not [v for v in volumes if "persistentVolumeClaim" in v], f"RayJob: a shared volume in {volumes}"
        for c in _containers(group):
            assert {"secretRef": {"name": "polyglot-lion-s3", "optional": True}} in c.get("envFrom", []), c["name"]


def test_rayservice_fields():
    svc = _kuberay("RayService")
    assert svc["apiVersion"] == "ray.io/v1" and svc["metadata"]["name"]
    _check_ray_cluster_spec(svc["spec"]["rayClusterSpec"], "RayService")
    assert _serve_config_v2()["applications"]


# --- Ray cluster launcher ---------------------------------------------------------------------------------------

def test_launcher_config_is_valid_for_ray_up():
    import jsonschema
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = _load(CLUSTER / "launcher-gpu.yaml")
    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(config, schema)
    validate_config(prepare_config(copy.deepcopy(config)))  # `ray up`'s own checks after filling in defaults

    assert config["cluster_name"] and config["provider"]["type"]
    types = config["available_node_types"]
    head = config["head_node_type"]
    assert head in types and not types[head]["resources"].get("GPU"), "the head is a CPU node"
    gpu = [name for name, t in types.items() if t["resources"].get("GPU", 0) >= 1]
    assert gpu, "launcher: no GPU node type"
    for name in gpu:
        assert 0 <= types[name]["min_workers"] <= types[name]["max_workers"] <= config["max_workers"]
    assert config["docker"]["image"].split(":")[1].startswith(ray.__version__)
    assert any("pip install" in c and "polyglot-lion" in c for c in config["setup_commands"])
    for remote, local in config["file_mounts"].items():
        assert (REPO / local).exists() or local == ".ray_token", f"file_mounts {remote}: {local} is not in the repo"
    assert any("RAY_AUTH_MODE=token" in c for c in config["head_start_ray_commands"])
    assert any("RAY_AUTH_MODE=token" in c for c in config["worker_start_ray_commands"])
    # the store, runs and MLflow artifacts in a bucket: no shared file system mounted
    assert "/mnt/shared" not in (CLUSTER / "launcher-gpu.yaml").read_text()
    assert any("--artifacts-destination s3://" in c for c in config["head_start_ray_commands"])


def test_ray_token_is_gitignored():
    out = subprocess.run(["git", "check-ignore", "-q", ".ray_token"], cwd=REPO)
    if out.returncode == 128:
        pytest.skip("not a git checkout")
    assert out.returncode == 0, ".ray_token (the local head's auth token) must be gitignored"
