"""The transcription service as a Ray Serve application. The logic lives in ``polyglot_lion.serving.app``.

    serve run serve_apps.transcription:app                       # model from $POLYGLOT_LION_MODEL
    serve run serve_apps/serve_config.yaml                       # the deployable config (args, autoscaling)
    serve deploy serve_apps/serve_config.yaml --address http://HEAD:8265
"""

import os

from polyglot_lion.serving import app as serving


def build_app(args: dict):
    """The builder YAML configs name (``import_path: serve_apps.transcription:build_app`` with ``args``).

    Serve calls a builder with exactly one argument, the ``args`` dict, and refuses one that takes more, so this does
    not expose the library builder's ``deployment_options``: in YAML those are the ``deployments:`` section.
    """
    return serving.build_app(args)


# `app` for `serve run serve_apps.transcription:app`; YAML configs use `build_app` with `args`.
app = build_app({"model": os.environ.get("POLYGLOT_LION_MODEL", "models:/polyglot-lion-tiny@champion"),
                 "tracking_uri": os.environ.get("MLFLOW_TRACKING_URI")})

__all__ = ["app", "build_app"]
