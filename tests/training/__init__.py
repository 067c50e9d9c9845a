"""Tests of ``granite_nar.training``: metrics, data, presets, draft noise and the trainer."""
