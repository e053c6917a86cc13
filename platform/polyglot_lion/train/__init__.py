"""Fine-tuning Qwen3-ASR with Ray Train: the loop (``loop.py``), the parts of its step (``step.py``), what it
measures (``metrics.py``), its checkpoints (``checkpoints.py``), its data stage (``data.py``), DeepSpeed's config
(``zero.py``) and the driver (``run.py``)."""
