"""Shared fixtures, and the test tiers: ``make check`` runs ``-m "not ray and not slow and not gpu"`` (pure logic,
config, normaliser, balancing, scoring, prompts; under 2 minutes on 2 cores), ``make test`` runs everything."""

import json
import os

import pytest


def pytest_configure(config):
    """Set before anything starts (and before torch loads OpenMP): Ray's workers, the test clusters' nodes and the
    benchmark scripts run as subprocesses inherit them.

    - Ray Train's controller polls its workers every 2 s by default, so each run's start and end wait for a poll;
      the suite's runs last seconds, so it polls more often.
    - OpenMP threads wait at each parallel region's end by spinning, a core each, by default. The suite runs
      several torch processes at once on few cores (the test process, Ray's workers, benchmark scripts, two xdist
      workers), and a spinning thread holds a core another process needs: small-model steps then take several
      times longer. Waiting threads sleep instead (``PASSIVE``)."""
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


# `make test` runs the suite on two xdist workers. Each takes a module whole (its module fixtures start once: a
# cluster and its training run, the Serve apps), except the modules in SPREAD, whose tests are independent runs on
# the session's fixtures and go one by one. The longest go first (LONGEST_FIRST only orders; a module missing from
# it runs in its usual place after them), so that the two workers end together on the short ones.
SPREAD = ("test_train_ray.py",)
LONGEST_FIRST = ("test_jobs.py", "test_train_ray.py", "test_gpu_bench_smoke.py", "test_train_throughput_smoke.py",
                 "test_serve.py", "test_serve_load_smoke.py", "test_bucket_pipeline.py", "test_model.py",
                 "test_experiment.py")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """xdist's loadscope scheduler with SPREAD's tests as scopes of their own (xdist_group markers do not group
    under pytest 9.2: xdist renames node ids through an attribute pytest no longer reads)."""
    from xdist.scheduler import LoadScopeScheduling

    class ModulesWholeOrSpread(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return nodeid if os.path.basename(module) in SPREAD else module

    return ModulesWholeOrSpread(config, log)


def pytest_collection_modifyitems(config, items):
    """Keep the tiers honest: a test that uses the Ray session (directly or through a fixture such as
    ``corpus_store``) must carry the ``ray`` marker; a ``gpu`` test is skipped on a machine without CUDA."""
    unmarked = [it.nodeid for it in items
                if "ray_session" in getattr(it, "fixturenames", ()) and it.get_closest_marker("ray") is None]
    if unmarked:
        raise pytest.UsageError("tests that start Ray need @pytest.mark.ray: " + ", ".join(unmarked))
    if any(it.get_closest_marker("gpu") for it in items):
        import torch  # only when a gpu test was collected: torch is slow to import

        if not torch.cuda.is_available():
            skip = pytest.mark.skip(reason="needs a CUDA GPU")
            for it in items:
                if it.get_closest_marker("gpu"):
                    it.add_marker(skip)
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda it: rank.get(it.path.name, len(rank)))  # stable: the rest keep their order


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3-compatible server (moto in server mode) on 127.0.0.1 for the whole session, its AWS environment
    in ``os.environ``. Started before Ray, so Ray's workers inherit the endpoint and keys."""
    from polyglot_lion.testing.s3 import S3Server

    log = tmp_path_factory.mktemp("s3") / "moto.log"
    with S3Server(log_path=str(log)) as server, server.activate():
        yield server


@pytest.fixture
def bucket(s3_server, request):
    """A fresh bucket for one test: ``s3://<name>``."""
    import re
    import uuid

    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-")
    return s3_server.create_bucket(f"{name}-{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="session")
def ray_session(s3_server):
    """One small local Ray instance for the whole test session (ray.init costs ~10 s here). It starts after the
    S3 server, so its workers can reach test buckets."""
    import ray

    from polyglot_lion.runtime import init_ray

    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    started = init_ray(num_cpus=2, object_store_mb=256, quiet=True)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="session")
def corpus_store(tmp_path_factory, ray_session):
    """A small synthetic store and its two-stage plan, shared by training tests."""
    from polyglot_lion.data.balance import corpus_from_table, make_plan, write_plan
    from polyglot_lion.data.prepare import ImportSpec, PrepareOptions, prepare
    from polyglot_lion.data.store import read_metadata
    from polyglot_lion.data.synth import synthesize_corpus

    root = tmp_path_factory.mktemp("corpus_store")
    specs = synthesize_corpus(str(root / "corpus"), train_utterances=48, eval_utterances=2, seed=0, progress=False)
    (root / "specs.json").write_text(json.dumps(specs))  # for tests that import the same corpus elsewhere
    prepare([ImportSpec.from_dict(s) for s in specs], str(root / "store"), PrepareOptions())
    meta = read_metadata(str(root / "store"), "train", columns=["id", "language", "dataset", "duration_s"])
    corpus, durations = corpus_from_table(meta)
    write_plan(make_plan(corpus, "two-stage", 0), durations, meta, str(root / "plan"))
    return str(root / "store"), str(root / "plan")


@pytest.fixture(scope="session")
def benchmark_module():
    """``benchmark_module("serve_load")``: a script of benchmarks/ as a module, for tests of its pure functions
    (the scripts are run as files, not a package)."""
    import importlib.util
    from pathlib import Path

    def load(name: str):
        path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A tiny random Qwen3-ASR checkpoint (transformers format, with processor files)."""
    from polyglot_lion.model.tiny import save_tiny_checkpoint
    from polyglot_lion.testing import TINY_TEXTS

    return save_tiny_checkpoint(str(tmp_path_factory.mktemp("tiny") / "ckpt"), TINY_TEXTS, seed=0)


@pytest.fixture(scope="session")
def mlflow_s3(s3_server, tmp_path_factory):
    """An MLflow tracking server on 127.0.0.1 (SQLite backend) with its artifacts in a bucket of the S3 server
    (``mlflow server --artifacts-destination s3://...``), for the whole session (it starts in ~10-40 s here).
    ``.uri`` is its tracking URI, ``.artifacts_destination`` the bucket prefix."""
    from polyglot_lion.testing.mlflow_server import MlflowServer

    root = tmp_path_factory.mktemp("mlflow_s3")
    destination = s3_server.create_bucket("mlflow-artifacts") + "/mlartifacts"
    with MlflowServer(str(root / "mlflow.db"), destination, env=s3_server.env,
                      log_path=str(root / "mlflow.log")) as server:
        yield server
