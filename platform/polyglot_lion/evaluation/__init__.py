"""Evaluation: the paper's scoring (WER/CER, pooled), the benchmark registry and published results."""
