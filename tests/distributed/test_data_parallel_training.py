"""Data-parallel fine-tuning: two processes under torchrun (gloo, CPU) take the same step as one process
with the same global batch, and the one set-up that would silently go wrong (nn.DataParallel) is refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).with_name("one_training_step.py")


def _run(command: list[str], cwd: Path) -> None:
    proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_two_processes_take_the_step_of_one_with_the_same_global_batch(tmp_path):
    _run([sys.executable, str(SCRIPT), str(tmp_path / "one.pt")], tmp_path)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    _run([*torchrun, str(SCRIPT), str(tmp_path / "two.pt")], tmp_path)
    one, two = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    assert two["world"] == 2 and one["world"] == 1
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-5)
    assert one["update"].keys() == two["update"].keys()
    moved = [name for name, update in one["update"].items() if update.abs().max() > 0]
    assert len(moved) > 0.9 * len(one["update"])  # the step reached the encoder, projector and editor
    for name, update in one["update"].items():
        torch.testing.assert_close(two["update"][name], update, atol=1e-6, rtol=1e-4, msg=name)


def test_several_gpus_in_one_process_are_refused(monkeypatch, tmp_path):
    from transformers import TrainingArguments

    from granite_nar import GraniteSpeechNarForCTC
    from granite_nar.testing import tiny_config
    from granite_nar.training import GraniteSpeechNarTrainer

    monkeypatch.setattr(TrainingArguments, "n_gpu", property(lambda self: 2))
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    with pytest.raises(RuntimeError, match=r"nn.DataParallel.*torchrun --nproc_per_node 2"):
        GraniteSpeechNarTrainer(model=GraniteSpeechNarForCTC(tiny_config()), args=args)


def test_fsdp_sharded_gradients_equal_one_process(tmp_path):
    script = SCRIPT.with_name("fsdp_one_backward.py")
    _run([sys.executable, str(script), str(tmp_path / "one.pt")], tmp_path)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    _run([*torchrun, str(script), str(tmp_path / "two.pt")], tmp_path)
    one, two = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    assert two["world"] == 2 and two["loss"] == pytest.approx(one["loss"], rel=1e-5)
    assert one["grads"].keys() == two["grads"].keys()
    for name, grad in one["grads"].items():
        torch.testing.assert_close(two["grads"][name], grad, atol=1e-6, rtol=1e-4, msg=name)
