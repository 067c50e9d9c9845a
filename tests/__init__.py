"""The test suite. Its layout follows the package.

``tests/<part>/test_<module>.py`` tests ``granite_nar/<part>/<module>.py``, with the ``modeling_`` prefix and the
``_granite_speech_nar`` suffix dropped where they only repeat the model's name (``model/test_encoder.py`` tests
``model/modeling_encoder.py``, ``audio/test_processing.py`` tests ``audio/processing_granite_speech_nar.py``);
``audio/test_waveform_and_io.py`` covers ``audio/waveform.py`` and ``audio/io.py``. ``test_lengths.py`` and
``test_cli.py`` test the top-level modules. Tests of the whole sit at the top too: the reference fixture, the
shipped tiny model, the docs, the benchmark and the package's import layout.

``testers.py`` holds the model testers and the helpers every test shares; a subfolder's ``conftest.py`` holds
the fixtures its files share.
"""
