"""Qwen3-ASR models through transformers' native ``qwen3_asr``: loading, conversion, the tiny builder, prompts."""
