"""Transcription: one engine (Transcriber) for bulk jobs, evaluation and serving."""
