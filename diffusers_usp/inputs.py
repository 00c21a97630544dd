"""The check that every rank was given the same transformer inputs: ranks fed different latents, prompts or timesteps
would each attend to a sequence assembled from mismatched pieces and return a wrong image without a word."""

from __future__ import annotations

import torch
import torch.distributed as dist

from .groups import Group


def check_same_inputs(tensors: list[torch.Tensor], group: Group) -> None:
    """One all-reduce of a checksum of `tensors` over `group`; raises on every rank if any rank's differ."""
    sums = torch.stack([t.detach().double().sum() for t in tensors]) if tensors else torch.zeros(1, dtype=torch.float64)
    both = torch.cat([sums, -sums])
    dist.all_reduce(both, op=dist.ReduceOp.MAX, group=group.group)
    hi, neg_lo = both.chunk(2)
    if not torch.equal(hi, -neg_lo):
        raise RuntimeError(
            "diffusers_usp: the ranks were given different transformer inputs. Every rank must see the same latents, "
            "prompt embeddings and timesteps: seed generators identically (e.g. torch.Generator().manual_seed(0)) and "
            "pass the same prompt on every rank. (Turn this check off with parallelize(..., check_inputs=False).)"
        )
