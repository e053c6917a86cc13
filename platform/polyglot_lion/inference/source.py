"""Where a model comes from: a folder, a hub id, an MLflow registered version, or a run's checkpoint.

    resolve_model("runs/tiny-cpu/ckpt")                      # a transformers-format folder
    resolve_model("s3://bucket/runs/_ray/tiny-cpu/checkpoint_...")  # ... or one in a bucket (a temporary copy)
    resolve_model("models:/polyglot-lion-tiny@champion")     # registered model by alias
    resolve_model("models:/polyglot-lion-tiny/3")            # ... or by version
    resolve_model("runs:/<run_id>")                          # the model a training run logged
    resolve_model("Qwen/Qwen3-ASR-0.6B-hf")                  # hub id (network or cache)

MLflow URIs are downloaded once into a local cache keyed by the artifact location, so serving replicas and
evaluation jobs on one machine share the copy.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..folders import cached_local_copy
from ..storage import is_remote, resolve

_MODELS_RE = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))/?$")
_RUNS_RE = re.compile(r"^runs:/(?P<run>[0-9a-f]{8,})(?:/(?P<path>.*))?$")
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


@dataclass
class ModelSource:
    uri: str  # as given
    path: str  # a local folder or a hub id, what load_model receives
    name: str | None = None  # registered model name
    version: str | None = None
    alias: str | None = None
    run_id: str | None = None
    extra: dict = field(default_factory=dict)

    def describe(self) -> dict:
        return {"uri": self.uri, "name": self.name, "version": self.version, "alias": self.alias,
                "run_id": self.run_id}


def tracking_uri(explicit: str | None = None) -> str:
    return explicit or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def _cache_dir() -> Path:
    return Path(os.environ.get("POLYGLOT_LION_CACHE", Path.home() / ".cache" / "polyglot-lion")) / "models"


def _download(artifact_uri: str, tracking: str) -> str:
    """A local folder for an artifact URI: the folder itself when it is local, else a cached download."""
    import shutil
    from urllib.parse import unquote, urlparse

    if artifact_uri.startswith(("file://", "/")):
        local = unquote(urlparse(artifact_uri).path) if artifact_uri.startswith("file://") else artifact_uri
        if os.path.isdir(local):
            return local
    dest = _cache_dir() / hashlib.sha1(artifact_uri.encode()).hexdigest()[:16]
    if not (dest / ".complete").exists():  # a download cut short is started again, never half-used
        import mlflow

        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        mlflow.set_tracking_uri(tracking)
        got = mlflow.artifacts.download_artifacts(artifact_uri=artifact_uri, dst_path=str(dest))
        (dest / ".path").write_text(got)
        (dest / ".complete").touch()
    return (dest / ".path").read_text()


def resolve_model(uri: str, tracking: str | None = None) -> ModelSource:
    """Turn any accepted model reference into a ModelSource with a loadable ``path``.

    Raises FileNotFoundError / ValueError that say what was looked up and what exists.
    """
    m = _MODELS_RE.match(uri)
    r = _RUNS_RE.match(uri)
    if uri.startswith("models:/") and not m:
        raise ValueError(f"model URI {uri!r}: expected models:/NAME@ALIAS or models:/NAME/VERSION")
    if m or r:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        tracking = tracking_uri(tracking)
        client = MlflowClient(tracking_uri=tracking)
        if m:
            name, alias, version = m["name"], m["alias"], m["version"]
            try:
                mv = (client.get_model_version_by_alias(name, alias) if alias
                      else client.get_model_version(name, version))
            except MlflowException as e:
                known = [rm.name for rm in client.search_registered_models()]
                raise FileNotFoundError(f"model {uri!r} not found in MLflow at {tracking} "
                                        f"({e.message.splitlines()[0]}); registered models: {known}") from None
            path = _download(mv.source, tracking)
            return ModelSource(uri, _model_folder(path), name=name, version=str(mv.version),
                               alias=alias or (mv.aliases[0] if getattr(mv, "aliases", None) else None),
                               run_id=mv.run_id)
        try:
            run = client.get_run(r["run"])
        except MlflowException:
            raise FileNotFoundError(f"run {r['run']!r} not found in MLflow at {tracking}") from None
        path = _download(f"{run.info.artifact_uri}/{r['path'] or 'model'}", tracking)
        return ModelSource(uri, _model_folder(path), run_id=run.info.run_id)
    if os.path.isdir(uri):
        return ModelSource(uri, _model_folder(uri))
    if is_remote(uri):
        if not resolve(uri).is_dir():
            raise FileNotFoundError(f"model {uri!r}: no such folder in the bucket")
        return ModelSource(uri, _model_folder(cached_local_copy(uri)))
    if os.path.exists(uri):
        raise ValueError(f"model {uri!r} is a file; give the checkpoint folder (with config.json)")
    return ModelSource(uri, uri)  # a hub id; load_model says clearly if it cannot be fetched


def _model_folder(path: str) -> str:
    """A run folder or checkpoint folder -> the folder with config.json (the latest checkpoint of a run)."""
    p = Path(path)
    if (p / "config.json").exists():
        return str(p)
    ckpts = sorted((c for c in p.rglob("config.json") if c.parent.name.startswith("checkpoint")),
                   key=lambda c: c.stat().st_mtime)
    if ckpts:
        return str(ckpts[-1].parent)
    raise FileNotFoundError(f"{path}: no config.json here or in checkpoint_* folders below; not a model checkpoint")
