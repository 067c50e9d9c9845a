"""Tests of ``granite_nar.transcription``: ``transcribe()`` and the transformers pipeline."""
