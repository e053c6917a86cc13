"""Fine-tuning Qwen3-ASR with Ray Train: the loop (``loop.py``), its data stage (``data.py``), the driver (``run.py``)."""
