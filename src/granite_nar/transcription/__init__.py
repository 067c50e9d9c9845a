"""Transcription: the high-level ``transcribe`` API and the transformers pipeline class."""
