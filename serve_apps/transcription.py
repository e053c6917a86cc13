"""The transcription service as a Ray Serve application. The logic lives in ``polyglot_lion.serving.app``.

    serve run serve_apps.transcription:app                       # model from $POLYGLOT_LION_MODEL
    serve run serve_apps/serve_config.yaml                       # the deployable config (args, autoscaling)
    serve deploy serve_apps/serve_config.yaml --address http://HEAD:8265
"""

import os

from polyglot_lion.serving.app import build_app

# `app` for `serve run serve_apps.transcription:app`; YAML configs use `build_app` with `args`.
app = build_app({"model": os.environ.get("POLYGLOT_LION_MODEL", "models:/polyglot-lion-tiny@champion"),
                 "tracking_uri": os.environ.get("MLFLOW_TRACKING_URI")})

__all__ = ["app", "build_app"]
