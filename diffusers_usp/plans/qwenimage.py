"""Qwen-Image plans: double-stream blocks whose processor attends over `[text, image]`.

Qwen-Image 2.1 (`QwenImage21Transformer2DModel`), a single-stream block-causal model, is in `qwenimage21.py`.
"""

from ..compat import ContextParallelOutput, native_plan
from .base import SequencePlan, SplitEach, SplitOrReplicate


def _qwenimage_splits() -> dict:
    from diffusers import QwenImageTransformer2DModel

    # diffusers' own plan places the splits right: the packed image and the text at the first block (`img_in` and
    # `txt_in` return one tensor each), the per-token `modulate_index` (edit models' `zero_cond_t`) at every block,
    # and the image and text RoPE tables where `pos_embed` makes them. It splits the text unconditionally; here the
    # text, its RoPE rows and its padding mask are `SplitOrReplicate`, so a prompt length P does not divide keeps
    # the text whole on every rank (a replicated block at the front of the joint attention) instead of failing.
    # A padding mask (batched prompts of different lengths) becomes the processor's `[B, 1, 1, text + image]`
    # key-padding mask, built from the local mask rows in the order of the local keys.
    native = native_plan(QwenImageTransformer2DModel)
    text = SplitOrReplicate(split_dim=1, expected_dims=3)
    return {
        "transformer_blocks.0": {**native["transformer_blocks.0"], "encoder_hidden_states": text},
        "transformer_blocks.*": {
            **native["transformer_blocks.*"],
            "encoder_hidden_states_mask": SplitOrReplicate(split_dim=1, expected_dims=2),
        },
        "pos_embed": {**native["pos_embed"], 1: SplitOrReplicate(split_dim=0, expected_dims=2, split_output=True)},
    }


def _qwenimage() -> SequencePlan:
    # ControlNet residuals, one image-token tensor per controlled block, are split like the image.
    return SequencePlan(
        split={
            "": {"controlnet_block_samples": SplitEach(split_dim=1, expected_dims=3)},
            **_qwenimage_splits(),
            "proj_out": ContextParallelOutput(gather_dim=1, expected_dims=3),
        },
    )


def _qwenimage_controlnet() -> SequencePlan:
    # The transformer's splits on the same blocks; its control condition is added to the image before the first
    # block, where the image is split. Each residual is gathered where it is made (one all-gather each) and handed
    # to the transformer whole, whose plan splits it again.
    return SequencePlan(
        split={
            **_qwenimage_splits(),
            "controlnet_blocks.*": ContextParallelOutput(gather_dim=1, expected_dims=3),
        },
    )


PLANS = {"QwenImageTransformer2DModel": _qwenimage, "QwenImageControlNetModel": _qwenimage_controlnet}
