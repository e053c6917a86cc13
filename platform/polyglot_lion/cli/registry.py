"""The MLflow commands: ``models`` (the model registry: list, show, promote) and ``runs`` (compare), each parser
beside its handler."""

from __future__ import annotations

import json


def add_models(sub) -> None:
    p = sub.add_parser("models", help="the MLflow model registry: list, show (with eval scores), promote",
                       description="Registered models and their versions in MLflow (tracking URI: --tracking-uri, "
                                   "$MLFLOW_TRACKING_URI or sqlite:///mlflow.db).")
    p.add_argument("--tracking-uri", help="MLflow tracking URI")
    p.add_argument("--json", action="store_true", help="print JSON")
    msub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    msub.add_parser("list", help="registered models with their version count and aliases")
    show = msub.add_parser("show", help="versions of a model with aliases, training run and evaluation scores")
    show.add_argument("name")
    prom = msub.add_parser("promote", help="point an alias (e.g. champion) at a version")
    prom.add_argument("name")
    prom.add_argument("version")
    prom.add_argument("--alias", required=True, help="alias to set, e.g. champion or staging")


def cmd_models(args) -> int:
    from ..tracking import registry  # heavy (the tracking package loads torch): only these two commands need it

    if args.action == "list":
        rows = registry.list_models(args.tracking_uri)
        print(json.dumps(rows, indent=2) if args.json else
              registry.table(rows, ["name", "versions", "latest", "aliases", "updated"]) if rows
              else "no registered models yet (training registers one per run)")
    elif args.action == "show":
        info = registry.show_model(args.name, args.tracking_uri)
        print(json.dumps(info, indent=2) if args.json else registry.format_model(info))
    else:
        out = registry.promote(args.name, args.version, args.alias, args.tracking_uri)
        print(json.dumps(out) if args.json else
              f"{out['name']}@{out['alias']} -> version {out['version']}"
              + (f" (was {out['previous']})" if out["previous"] else "")
              + f"; serve it as models:/{out['name']}@{out['alias']}")
    return 0


def add_runs(sub) -> None:
    p = sub.add_parser("runs", help="compare training (or evaluation) runs in MLflow",
                       description="A table of runs with their key params and metrics, newest first.")
    rsub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    cmp_ = rsub.add_parser("compare", help="table of runs of an experiment")
    cmp_.add_argument("--experiment", default="polyglot-lion", help="experiment (default polyglot-lion; "
                                                                    "evaluations: polyglot-lion-eval)")
    cmp_.add_argument("--max-runs", type=int, default=50, help="newest N runs (default 50)")
    cmp_.add_argument("--tracking-uri", help="MLflow tracking URI")
    cmp_.add_argument("--json", action="store_true", help="print JSON")


def cmd_runs(args) -> int:
    from ..tracking import registry  # heavy (the tracking package loads torch), as in cmd_models

    rows, cols = registry.compare_runs(args.experiment, args.tracking_uri, args.max_runs)
    print(json.dumps(rows, indent=2, default=str) if args.json else registry.table(rows, cols))
    return 0
