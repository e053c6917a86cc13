"""The MLflow model registry and runs, as tables people read: list, show (with evaluation scores), promote,
compare runs. Native mlflow calls against any tracking URI (SQLite file by default, or an mlflow server).

    polyglot-lion models list
    polyglot-lion models show polyglot-lion-tiny
    polyglot-lion models promote polyglot-lion-tiny 3 --alias champion
    polyglot-lion runs compare --experiment polyglot-lion
"""

from __future__ import annotations

import time

from ..inference.source import tracking_uri as resolve_tracking_uri

RUN_PARAMS = ("data.target_mode", "train.max_steps", "train.lr", "train.grad_accum", "scaling.num_workers",
              "model.source")
RUN_METRICS = ("loss", "dev_loss", "audio_s_per_s", "padding_efficiency", "gpu_hours", "estimated_cost_usd")


def _client(tracking_uri: str | None):
    from mlflow.tracking import MlflowClient  # heavy (MLflow): imported when a command talks to a store

    return MlflowClient(tracking_uri=resolve_tracking_uri(tracking_uri))


def _when(ms: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ms / 1000)) if ms else ""


def table(rows: list[dict], columns: list[str]) -> str:
    """A Markdown table of ``rows`` (missing values blank). Pure."""
    def cell(v) -> str:
        if v is None:
            return ""
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v).replace("|", "/")
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(out)


def list_models(tracking_uri: str | None = None) -> list[dict]:
    client = _client(tracking_uri)
    rows = []
    for rm in client.search_registered_models():
        versions = client.search_model_versions(f"name='{rm.name}'")
        latest = max((int(v.version) for v in versions), default=None)
        rows.append({"name": rm.name, "versions": len(versions), "latest": latest,
                     "aliases": ", ".join(f"{a}->{v}" for a, v in sorted((rm.aliases or {}).items())),
                     "updated": _when(rm.last_updated_timestamp)})
    return rows


def _not_found(client, name: str) -> ValueError:
    known = [rm.name for rm in client.search_registered_models()]
    return ValueError(f"registered model {name!r} not found; registered: {known or 'none'}")


def show_model(name: str, tracking_uri: str | None = None) -> dict:
    """Versions of ``name`` with their aliases, source run, training loss and evaluation scores."""
    from mlflow.exceptions import MlflowException  # heavy (MLflow), as in _client

    client = _client(tracking_uri)
    try:
        rm = client.get_registered_model(name)
    except MlflowException:
        raise _not_found(client, name) from None
    aliases: dict[str, list[str]] = {}
    for alias, version in (rm.aliases or {}).items():
        aliases.setdefault(str(version), []).append(alias)
    versions = []
    for v in sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version)):
        evals = {k[len("eval."):]: val for k, val in (v.tags or {}).items()
                 if k.startswith("eval.") and k.count(".") >= 2 and not k.endswith(".run_id")}
        row = {"version": str(v.version), "aliases": ", ".join(sorted(aliases.get(str(v.version), []))),
               "created": _when(v.creation_timestamp), "run_id": v.run_id or "", "source": v.source, "eval": evals}
        if v.run_id:
            try:
                run = client.get_run(v.run_id)
                row["run_name"] = run.info.run_name
                row["loss"] = run.data.metrics.get("loss")
                row["target_mode"] = run.data.params.get("data.target_mode")
            except MlflowException:
                pass
        versions.append(row)
    return {"name": name, "description": rm.description or "", "versions": versions}


def format_model(info: dict) -> str:
    eval_keys = sorted({k for v in info["versions"] for k in v["eval"]})
    rows = [{**{k: v.get(k) for k in ("version", "aliases", "created", "run_name", "loss", "target_mode")},
             **{f"eval {k}": v["eval"].get(k) for k in eval_keys}} for v in info["versions"]]
    cols = ["version", "aliases", "created", "run_name", "loss", "target_mode"] + [f"eval {k}" for k in eval_keys]
    return f"{info['name']}: {len(rows)} versions\n\n" + table(rows, cols)


def promote(name: str, version: str, alias: str, tracking_uri: str | None = None) -> dict:
    """Point ``alias`` at ``version`` (a Serve app on models:/NAME@ALIAS picks it up on redeploy)."""
    from mlflow.exceptions import MlflowException  # heavy (MLflow), as in _client

    if not alias or not alias.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"alias {alias!r}: use letters, digits, - and _ (e.g. champion, staging)")
    client = _client(tracking_uri)
    try:
        client.get_registered_model(name)
    except MlflowException:
        raise _not_found(client, name) from None
    try:
        client.get_model_version(name, str(version))
    except MlflowException:
        have = sorted(int(v.version) for v in client.search_model_versions(f"name='{name}'"))
        raise ValueError(f"{name} has no version {version}; versions: {have}") from None
    previous = (client.get_registered_model(name).aliases or {}).get(alias)
    client.set_registered_model_alias(name, alias, str(version))
    return {"name": name, "alias": alias, "version": str(version), "previous": previous}


def compare_runs(experiment: str = "polyglot-lion", tracking_uri: str | None = None,
                 max_runs: int = 50) -> tuple[list[dict], list[str]]:
    """Rows (newest first) and the columns worth showing: key params, then the training metrics, or for other
    experiments (evaluation) the metrics the runs have."""
    client = _client(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        known = [e.name for e in client.search_experiments()]
        raise ValueError(f"experiment {experiment!r} not found; experiments: {known}")
    runs = client.search_runs([exp.experiment_id], max_results=max_runs, order_by=["attributes.start_time DESC"])
    metric_keys = sorted({k for r in runs for k in r.data.metrics})
    metrics = [m for m in RUN_METRICS if m in metric_keys] or metric_keys[:12]
    params = [p for p in RUN_PARAMS if any(p in r.data.params for r in runs)]
    rows = []
    for run in runs:
        row = {"run": run.info.run_name, "status": run.info.status, "started": _when(run.info.start_time)}
        row.update({p.split(".")[-1]: run.data.params.get(p) for p in params})
        row.update({m: run.data.metrics.get(m) for m in metrics})
        rows.append(row)
    return rows, ["run", "status", "started"] + [p.split(".")[-1] for p in params] + metrics
