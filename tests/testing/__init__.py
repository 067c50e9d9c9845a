"""Tests of ``granite_nar.testing``, the test support shipped with the package."""
