"""transformers' own common model tests, for the installed transformers version, ready to import.

``ModelTesterMixin``, ``ConfigTester`` and the feature-extraction mixins ship in the *source
distribution* of transformers (``tests/test_*_common.py``), not in the wheel. :func:`load` fetches the
sdist of exactly the installed version from the package registry once (``pip download``), extracts those
files into a cache folder as a package, and imports it. Three helpers they import live in parts of the
transformers repository that the sdist leaves out; they are provided here:

* ``ExportTesterMixin`` (torch.export tests) and ``GenerationTesterMixin`` (autoregressive ``generate``
  tests): empty, since neither applies to a non-autoregressive editor;
* ``config_common_kwargs``: the common config arguments ``ConfigTester`` sets (the transformers repo's
  ``tests/utils/test_configuration_utils.py``; only used for configs without sub-configs).

Nothing is copied into this repository. When the sdist cannot be obtained (no registry, no pip), the
tests that need it are skipped with the reason. ``GRANITE_NAR_TRANSFORMERS_TESTS`` may point at a folder
holding an extracted sdist's ``tests/`` files instead.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import transformers

FILES = (
    "test_modeling_common.py",
    "test_configuration_common.py",
    "test_feature_extraction_common.py",
    "test_sequence_feature_extraction_common.py",
)
PACKAGE = "transformers_common_tests"
STUBS = {
    "exporters/__init__.py": "",
    "exporters/test_export.py": "class ExportTesterMixin:\n    pass\n",
    "generation/__init__.py": "",
    "generation/test_utils.py": "class GenerationTesterMixin:\n    pass\n",
    "utils/__init__.py": "",
    "utils/test_configuration_utils.py": """config_common_kwargs = {
    "return_dict": False,
    "output_hidden_states": True,
    "dtype": "float16",
    "chunk_size_feed_forward": 5,
    "architectures": ["BertModel"],
    "id2label": {0: "label"},
    "label2id": {"label": "0"},
    "problem_type": "regression",
}
""",
}


def cache_dir() -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return root / "granite_nar" / f"transformers-{transformers.__version__}-common-tests"


def _download_sdist(into: Path) -> Path:
    """The sdist of the installed transformers version, from the registry pip is configured for."""
    version = transformers.__version__
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:"]
        + ["--dest", str(into), f"transformers=={version}"],
        check=True,
        capture_output=True,
        timeout=300,
    )
    found = sorted(into.glob(f"transformers-{version}.tar.gz"))
    if not found:
        raise FileNotFoundError(f"pip download left no transformers-{version}.tar.gz in {into}")
    return found[0]


def _build(target: Path) -> None:
    source = os.environ.get("GRANITE_NAR_TRANSFORMERS_TESTS")
    package = target / PACKAGE
    package.mkdir(parents=True, exist_ok=True)
    if source:
        for name in FILES:
            (package / name).write_bytes((Path(source) / name).read_bytes())
    else:
        with tempfile.TemporaryDirectory() as tmp:
            sdist = _download_sdist(Path(tmp))
            with tarfile.open(sdist) as tar:
                prefix = f"transformers-{transformers.__version__}/tests/"
                for name in FILES:
                    member = tar.extractfile(prefix + name)
                    if member is None:
                        raise FileNotFoundError(f"{prefix + name} is not in {sdist.name}")
                    (package / name).write_bytes(member.read())
    (package / "__init__.py").write_text("")
    for name, text in STUBS.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)
    (target / "complete").write_text(transformers.__version__)


def load():
    """``(package, None)`` with the common-test modules importable as ``package.<module>``, or
    ``(None, reason)`` when they cannot be obtained."""
    target = cache_dir()
    try:
        if not (target / "complete").is_file():
            _build(target)
        if str(target) not in sys.path:
            sys.path.insert(0, str(target))
        package = importlib.import_module(PACKAGE)
        for name in FILES:
            importlib.import_module(f"{PACKAGE}.{name.removesuffix('.py')}")
    except Exception as err:  # no registry, no pip, an sdist without the files, an import error
        detail = getattr(err, "stderr", b"") or b""
        detail = detail.decode(errors="replace").strip().splitlines()[-1:] if detail else []
        reason = (
            f"transformers {transformers.__version__} common tests unavailable: {type(err).__name__}: {err}"
        )
        return None, " ".join([reason, *detail])
    return package, None
