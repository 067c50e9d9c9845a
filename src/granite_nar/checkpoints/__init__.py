"""Checkpoints: the original (remote-code) layout, loading it without remote code, and converting it.

``original_layout`` is the one place that knows the original names (pure tables and dict/tensor mapping,
no model imports); ``loading`` reads folders and builds a model class it is given; ``conversion`` writes
and verifies native folders.
"""
