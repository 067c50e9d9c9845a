"""Tests of ``granite_nar.audio``: waveforms, audio files, the feature extractor and the processor."""
