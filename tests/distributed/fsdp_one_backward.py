"""One backward pass of the shipped tiny model under FSDP (``fully_shard`` on every conformer block and
editor layer, then the root), on CPU with gloo; run alone for the reference or under torchrun.

    python tests/distributed/fsdp_one_backward.py OUT.pt
    torchrun --standalone --nproc_per_node 2 tests/distributed/fsdp_one_backward.py OUT.pt

Each process takes its share of the four fixture utterances; the loss runs inside the root's forward
(``loss_closure``) with the data-parallel normaliser. Rank 0 saves the global loss and every full
(unsharded) gradient. Dropout off, batch norm on running statistics, as in one_training_step.py.
"""

from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist
from one_training_step import tiny_model_and_items  # the script beside this one

from granite_nar.model.modeling_editor import GraniteSpeechNarEditorLayer
from granite_nar.model.modeling_encoder import GraniteSpeechNarConformerBlock
from granite_nar.training import DataCollatorForGraniteSpeechNar, compute_nar_losses
from granite_nar.training.trainer import data_parallel_divisor


def main(out: str) -> None:
    torch.set_num_threads(1)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        dist.init_process_group("gloo")
    rank = dist.get_rank() if world > 1 else 0
    processor, model, items = tiny_model_and_items()
    model.train()
    batch = DataCollatorForGraniteSpeechNar(processor.feature_extractor, processor.tokenizer)(
        items[rank::world]
    )
    if world > 1:
        from torch.distributed.fsdp import fully_shard

        for module in model.modules():
            if isinstance(module, (GraniteSpeechNarEditorLayer, GraniteSpeechNarConformerBlock)):
                fully_shard(module)
        fully_shard(model)
    losses = model(
        loss_closure=lambda m: compute_nar_losses(
            m,
            batch["input_features"],
            batch["input_features_mask"],
            batch["labels"],
            batch["label_lengths"],
            divisor=data_parallel_divisor if world > 1 else None,
        )
    )
    losses.loss.backward()
    grads = {}
    for name, parameter in model.named_parameters():
        grad = parameter.grad
        grads[name] = (grad.full_tensor() if hasattr(grad, "full_tensor") else grad).detach().clone()
    loss = losses.loss.detach().clone()
    if world > 1:
        dist.all_reduce(loss)
        loss /= world
    if rank == 0:
        torch.save({"loss": loss.item(), "grads": grads, "world": world}, out)
    if world > 1:
        # Both ranks tear gloo down together: a rank that destroys the group while the other still uses it
        # can abort ("terminate called without an active exception").
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
