"""One Trainer step of the shipped tiny model on the four fixture utterances; run alone or under torchrun.

    python tests/distributed/one_training_step.py OUT.pt                       # one process, batch 4
    torchrun --nproc_per_node 2 tests/distributed/one_training_step.py OUT.pt  # two processes, 2 each

Plain SGD (the update is -lr * gradient, so a gradient that is summed instead of averaged shows), no
dropout, no clipping, and the encoder's batch norm on its running statistics (in training mode each
process would normalise with its own half of the batch, as nn.BatchNorm1d does under any data-parallel
training): rank 0 saves the logged loss and every parameter's update to OUT.pt.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
from transformers import TrainingArguments

from granite_nar import GraniteSpeechNarForCTC, GraniteSpeechNarProcessor, load_audio
from granite_nar.training import DataCollatorForGraniteSpeechNar, GraniteSpeechNarTrainer

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "examples" / "models" / "tiny-synth"
FIXTURES = REPO / "tests" / "fixtures" / "tiny_synth"


def tiny_model_and_items():
    """The processor, the tiny model without dropout and with its batch norm on running statistics (in
    training mode too: each process's part of the batch differs from the whole), and the four fixture
    utterances."""
    processor = GraniteSpeechNarProcessor.from_pretrained(MODEL)
    model = GraniteSpeechNarForCTC.from_pretrained(MODEL, dtype=torch.float32)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        if isinstance(module, torch.nn.BatchNorm1d):
            module.train = lambda mode=True, m=module: torch.nn.Module.train(m, False)
    rows = [json.loads(line) for line in (FIXTURES / "manifest.jsonl").read_text().splitlines()]
    items = [{"audio": load_audio(FIXTURES / r["audio_path"]), "text": r["text"]} for r in rows]
    return processor, model, items


def main(out: str) -> None:
    torch.set_num_threads(1)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    processor, model, items = tiny_model_and_items()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    args = TrainingArguments(
        output_dir=os.path.join(os.path.dirname(os.path.abspath(out)), f"run{world}"),
        per_device_train_batch_size=len(items) // world,
        max_steps=1,
        learning_rate=0.5,
        optim="sgd",
        lr_scheduler_type="constant",
        max_grad_norm=0.0,
        weight_decay=0.0,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        ddp_backend="gloo" if world > 1 else None,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        disable_tqdm=True,
        seed=0,
    )
    trainer = GraniteSpeechNarTrainer(
        model=model,
        args=args,
        train_dataset=items,
        data_collator=DataCollatorForGraniteSpeechNar(processor.feature_extractor, processor.tokenizer),
        processor=processor,
    )
    trainer.train()
    if trainer.is_world_process_zero():
        loss = next(entry["loss"] for entry in trainer.state.log_history if "loss" in entry)
        update = {name: p.detach() - before[name] for name, p in trainer.model.named_parameters()}
        torch.save({"loss": loss, "update": update, "world": world}, out)


if __name__ == "__main__":
    main(sys.argv[1])
