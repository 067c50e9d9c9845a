"""Tests of ``granite_nar.checkpoints``: the original layout, loading it, and converting it."""
