"""Checkpoint folders shared by the tests of ``granite_nar.checkpoints``: a tiny synthetic original-layout
checkpoint, a private copy of it to break, and helpers that edit a folder or fake the offline Hub cache."""

from __future__ import annotations

from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file
from testers import GraniteSpeechNarForCTCModelTester

from granite_nar.testing.synthetic_checkpoint import write_synthetic_original_checkpoint


@pytest.fixture(scope="package")
def tiny_original(tmp_path_factory) -> Path:
    """A tiny synthetic original-layout checkpoint (single file), written once."""
    return write_synthetic_original_checkpoint(
        tmp_path_factory.mktemp("orig") / "tiny", GraniteSpeechNarForCTCModelTester().get_config(), seed=3
    )


@pytest.fixture
def original_copy(tiny_original, tmp_path) -> Path:
    """A private copy to break."""
    folder = tmp_path / "original"
    folder.mkdir()
    for p in tiny_original.iterdir():
        (folder / p.name).write_bytes(p.read_bytes())
    return folder


def _edit_weights(folder: Path, edit) -> None:
    tensors = load_file(folder / "model.safetensors")
    edit(tensors)
    save_file(tensors, folder / "model.safetensors")


def _fake_cache(
    root: Path,
    source: Path,
    repo: str = "org/granite-tiny",
    commit: str = "0123456789abcdef0123456789abcdef01234567",
) -> str:
    """The layout huggingface_hub keeps: models--org--name/{refs/main, snapshots/<commit>/files}."""
    repo_dir = root / f"models--{repo.replace('/', '--')}"
    snapshot = repo_dir / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for p in source.iterdir():
        (snapshot / p.name).write_bytes(p.read_bytes())
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)
    return commit


@pytest.fixture
def edit_weights():
    """``edit_weights(folder, edit)``: load ``model.safetensors``, apply ``edit`` to the dict, write it back."""
    return _edit_weights


@pytest.fixture
def fake_hub_cache():
    """``fake_hub_cache(root, source, repo=..., commit=...)``: copy ``source`` into a Hub cache layout under
    ``root`` and return the commit."""
    return _fake_cache
