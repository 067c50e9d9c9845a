"""Tests of ``granite_nar.model``: configuration, encoder, projector, editor, CTC and the two models."""
