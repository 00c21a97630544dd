"""Joint text/image sequences: block-causal masks from per-token metadata (`token_mask.py`), and the input modes of
diffusers' own tests for Qwen-Image 2.1, HiDream-I1, Krea 2 and Bria FIBO 2 beyond their coverage cases
(`tests/zoo/`): odd lengths (uneven splits), no mask, batch 1, other processors and layouts; exact, or refused with
the same error on every rank."""

import numpy as np
import pytest
import torch
from tasks import joint
from tasks.joint import dense_block_causal

from diffusers_usp.token_mask import BlockCausalMask, PlacedMask

QWEN = "QwenImage21Transformer2DModel"
FLEX = "diffusers.models.transformers.transformer_qwenimage21.QwenImage21FlexAttnProcessor"


def test_pieces_cover_the_block_causal_mask_without_a_sequence_sized_mask():
    """Catches a piece that attends keys beyond its rows' limit (a later image block, a later text token), drops
    padded keys in one piece only, or allocates an S x S mask: the pieces' attention, merged by log-sum-exp over two
    key blocks in either order (as a ring sees them), equals attention under the dense mask, and no piece's mask is
    larger than its rows times the keys before them."""
    g = torch.Generator().manual_seed(3)
    S, B, h, D = 19, 2, 2, 4
    mask = BlockCausalMask(((0, 3, -1), (3, 7, 0), (7, 12, -1), (12, 19, 1)), torch.rand(B, S, generator=g) > 0.2)
    q, k, v = (torch.randn(B, S, h, D, generator=g) for _ in range(3))
    dense = dense_block_causal(mask, B).expand(B, h, S, S)
    scores = (q.transpose(1, 2) @ k.transpose(1, 2).transpose(-1, -2)) * D**-0.5
    want = torch.softmax(scores.masked_fill(~dense, float("-inf")), -1).nan_to_num(0) @ v.transpose(1, 2)
    placed = PlacedMask(mask, [], [list(range(S))])
    order = torch.randperm(S, generator=g)  # rows held in any order
    for blocks in ([torch.arange(0, 9), torch.arange(9, S)], [torch.arange(9, S), order[order < 9]]):
        out = lse = None
        for cols in blocks:
            for r0, r1, n, piece in mask.pieces(order, cols, q.device):
                assert piece is None or piece.numel() <= B * (r1 - r0) * max(n, 1), piece.shape
            o, s = placed.attend(q[:, order], k[:, cols], v[:, cols], order, cols, (0, h), D**-0.5)
            if out is None:
                out, lse = o, s
            else:
                total = torch.logaddexp(lse, s)
                anchor = total.masked_fill(total == float("-inf"), 0)
                out = out * (lse - anchor).exp()[..., None] + o * (s - anchor).exp()[..., None]
                lse = total
        torch.testing.assert_close(out, want[:, :, order], atol=1e-5, rtol=0)
    # A key block entirely in the future of the first image's rows: skipped (no keys), as a ring step skips it.
    [(_, _, n, _)] = mask.pieces(torch.arange(3, 7), torch.arange(12, 19), q.device)
    assert n == 0


def test_block_causal_mask_rejects_runs_that_are_not_one_tiling():
    """Catches a mask whose runs leave a gap or split one block in two: its row-independent key limits would be
    wrong, silently."""
    with pytest.raises(ValueError, match="tile"):
        BlockCausalMask(((0, 3, -1), (4, 6, 0)))
    with pytest.raises(ValueError, match="one run"):
        BlockCausalMask(((0, 3, 0), (3, 5, -1), (5, 6, 0)))


# (world, ring degree, other tokens, joint text sharded, replicated, front)
CORE = [
    (2, 1, 12, 4, 0, True),
    (3, 1, 10, 0, 5, True),
    (3, 1, 9, 6, 0, False),
    (4, 2, 14, 0, 3, False),
    (3, 3, 11, 0, 0, True),
]


@pytest.mark.parametrize("world, R, others, text, rep, front", CORE)
def test_block_causal_attention_equals_the_dense_mask(pools, world, R, others, text, rep, front):
    """Catches a block-causal mask applied in the exchange's order instead of the sequence's, with joint text sharded
    or replicated (front or back), uneven chunks, and around a ring (a block entirely in a query's future skipped,
    the replicated keys attended once)."""
    for out, positions, want in pools(world).run(joint.block_causal_core, R, others, text, rep, front):
        np.testing.assert_allclose(out, want[:, positions], atol=1e-5, rtol=0)


def _reference(name, config, inputs, processor=None):
    model, kwargs = joint.build_mode(name, config, inputs, processor)
    with torch.no_grad():
        return model(**kwargs, return_dict=False)[0].numpy()


# (class, world, ring degree, config overrides, input overrides, processor): modes of diffusers' own tests
MODES = {
    "qwen-odd-length-batch1-unpadded": (QWEN, 3, 1, {}, dict(texts=(3, 4), target=(2, 4), batch=1, pad=None), None),
    "qwen-no-causal-condition-ring": (QWEN, 4, 2, dict(causal_condition=False), dict(texts=(2, 5)), None),
    "qwen-flex-processor": (QWEN, 2, 1, {}, {}, FLEX),
    "krea2-odd-length-unmasked": (
        "Krea2Transformer2DModel",
        3,
        1,
        {},
        dict(text=5, height=2, width=3, masked=False),
        None,
    ),
    "hidream-non-square-padded": ("HiDreamImageTransformer2DModel", 3, 1, {}, dict(height=4, width=8), None),
    "hidream-odd-square-ring": ("HiDreamImageTransformer2DModel", 4, 2, {}, dict(height=10, width=10, batch=1), None),
    "fibo2-context-image-batch1": ("BriaFibo2Transformer2DModel", 2, 1, {}, dict(batch=1, context=[(6, 10)]), None),
}


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")  # the tiny flex reference
@pytest.mark.parametrize("mode", MODES)
def test_joint_model_modes_are_exact(pools, mode):
    """Catches a plan that holds for its coverage case only: an uneven split of the joint stream (a RoPE or mask row
    off by one chunk), the other layouts the forward builds (Fibo 2's gist first when unpadded, HiDream's padded
    non-square latents), a mode that changes which per-token tensors exist (Qwen-Image 2.1 without
    `causal_condition`), and the flex processor, which must also reach the core's block-causal path."""
    name, world, ring, config, inputs, processor = MODES[mode]
    want = _reference(name, config, inputs, processor)
    for out in pools(world).run(joint.mode_run, name, config, inputs, ring, processor):
        assert not isinstance(out, str), out
        np.testing.assert_allclose(out, want, atol=1e-5, rtol=0)


def test_qwenimage21_prefix_kv_cache_is_refused_on_every_rank(pools):
    """Catches the pipeline's default prefix KV cache run on sharded tokens (it stores and re-reads keys by
    whole-sequence slices): every rank raises the same error, naming the fix, instead of returning a wrong image."""
    outs = pools(2).run(joint.mode_run, QWEN, {}, {}, 1, None, joint.qwenimage21_kv_cache)
    reasons = {out.split("`", 2)[-1] for out in outs}  # the message after the argument's repr (an address per rank)
    assert len(outs) == 2 and len(reasons) == 1 and "use_kv_cache=False" in outs[0], outs


def test_flex_block_mask_is_refused_on_every_rank(pools):
    """Catches a flex BlockMask over a sharded sequence attended as if its positions were this rank's (or failing
    with an AttributeError deep in the core): every rank raises the same error, naming the processor to use."""
    outs = pools(2).run(joint.flex_block_mask_refused)
    assert len(set(outs)) == 1 and "QwenImage21AttnProcessor" in outs[0], outs
