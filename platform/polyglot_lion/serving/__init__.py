"""HTTP serving with Ray Serve (serving/app.py) over the shared Transcriber."""
