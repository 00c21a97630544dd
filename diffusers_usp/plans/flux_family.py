"""MMDiT plans, Flux descendants and relatives: text joint with the image (prepended) in the attention sequence.

Every model here concatenates `[text, image]` per rank, inside its attention processor (double-stream blocks) or
its forward (single-stream blocks), with the RoPE table concatenated the same way from the split `txt_ids` and
`img_ids`. So each rank's joint sequence is `[its text chunk, its image chunk]` with matching RoPE rows: the
attention is exact whatever order the all-to-all assembles the chunks in, and the forward's own
`hidden_states[:, text_len:]` uses the local text length. Text is `SplitOrReplicate`: sharded with the image when P
divides its length, else whole on every rank and a replicated block in attention (`replicated_front`, the default).

Chroma's forward takes a padding vector over `[text, image]` (`attention_mask`, `[B, T + N]`) and every block expands
it to a dense per-query mask, `m[:, None, None, :] * m[:, None, :, None]`. The plan keeps that vector whole, so each
block builds the whole sequence's `[B, 1, L, L]` mask, which the core applies after the exchange, when this rank
holds every query and key of its heads (`attention.sharded_attention`, dense masks).
"""

from ..compat import ContextParallelInput, ContextParallelOutput
from .base import Refused, SequencePlan, SplitOrReplicate
from .flux import FLUX

# Bria, LongCat-Image, Ovis-Image: Flux 1's forward and so Flux 1's splits (`[S, 3]` ids, or the deprecated
# `[B, S, 3]` that Bria's and Ovis's forwards still take, split on their token dim; `ids = cat(txt_ids, img_ids)`;
# blocks that concatenate `[text, image]`).
_FLUX_LIKE = FLUX

# Flux 2: its pipelines pass batched `[B, S, 4]` ids (the forward takes row 0), so the ids split along dim 1, as in
# diffusers' own `_cp_plan`. That plan splits the text unconditionally; ours keeps it whole when P does not divide it.
# The double-stream blocks keep text and image apart and the single-stream input is `cat([text, image])` of the
# local chunks, with the RoPE table concatenated the same way. Refused: the Klein KV-cache mode (`kv_cache_mode`,
# `Flux2KleinKVPipeline` with reference images). In "extract" the reference tokens lead `hidden_states` and the
# forward blends their modulation and cuts them out by their whole count (on sharded tokens: a wrong output of the
# wrong length, with any processor), and they self-attend apart from the rest through `_flux2_kv_causal_attention`, a
# helper outside the processors' `__call__`; "cached" attends to cached K/V through the same helper. Reference images
# given as ordinary image tokens (`Flux2KleinPipeline`, `kv_cache_mode=None`) are covered.
_FLUX2 = SequencePlan(
    split={
        "": {
            "hidden_states": ContextParallelInput(split_dim=1, expected_dims=3),
            "encoder_hidden_states": SplitOrReplicate(split_dim=1, expected_dims=3),
            "img_ids": ContextParallelInput(split_dim=1, expected_dims=3),
            "txt_ids": SplitOrReplicate(split_dim=1, expected_dims=3),
            "kv_cache_mode": Refused(
                "Flux2Transformer2DModel's reference-image KV cache (kv_cache_mode 'extract' and 'cached') cuts and "
                "attends the reference tokens apart from the rest, which sharded tokens would get wrong. The default "
                "mode works: pass kv_cache_mode=None, with any reference images as ordinary image tokens "
                "(Flux2KleinPipeline rather than Flux2KleinKVPipeline)."
            ),
        },
        "proj_out": ContextParallelOutput(gather_dim=1, expected_dims=3),
    },
)

# Flux 3: each token mode (text, image, reference image) first runs its own mode blocks, self-attention over that
# mode alone, then the joint single blocks attend over `[text, image, reference]`. The reference image tokens and
# their ids split like the image (their count must divide by P too); the per-token modulations are built from local
# token counts, and the output slice `content[:, :image_seq_len]` uses the local image length. Only the text mode
# blocks and the single blocks hold the text, so only they may treat it as a replicated block: an image mode block
# must never take its first tokens for replicated text. When the text stays replicated, a text mode block holds
# nothing but replicated tokens, which the core attends by local heads.
_FLUX3 = SequencePlan(
    split={
        "": {
            "hidden_states": ContextParallelInput(split_dim=1, expected_dims=3),
            "encoder_hidden_states": SplitOrReplicate(split_dim=1, expected_dims=3),
            "img_ids": ContextParallelInput(split_dim=0, expected_dims=2),
            "txt_ids": SplitOrReplicate(split_dim=0, expected_dims=2),
            "image_cond_hidden_states": ContextParallelInput(split_dim=1, expected_dims=3),
            "image_cond_ids": ContextParallelInput(split_dim=0, expected_dims=2),
        },
        "proj_out": ContextParallelOutput(gather_dim=1, expected_dims=3),
    },
    joint_attention=("txt_mode_blocks.*", "single_transformer_blocks.*"),
)

# Bria FIBO: Flux-like, plus one text-encoder layer per block (`text_encoder_layers`, a list the root hook cannot
# split) that replaces half of the text channels before each block. Each list entry goes through its own
# `caption_projection.i`, so it is split at that module's input, exactly like `encoder_hidden_states`. Its pipeline
# passes a key-padding mask (in `joint_attention_kwargs`) only when the prompt batch is padded (e.g. a negative prompt
# of another length under CFG); the no-mask path is what this plan covers. That mask is one `[B, 1, 1, T + I]` tensor
# over the joint sequence, whose local part is `[text chunk, image chunk]`: no contiguous split gives it, so the core
# refuses it (a mask longer than the local keys) rather than attend wrongly.
_FIBO = SequencePlan(
    split={
        **_FLUX_LIKE.split,
        "caption_projection.*": {"caption": SplitOrReplicate(split_dim=1, expected_dims=3)},
    },
)

# GLM-Image: the forward takes the 4-D latent and patchifies it in `image_projector`, whose linear `proj` sees the
# `[B, S, C*p*p]` patch sequence: split there. The RoPE table comes from `rope` (the full grid): split its outputs.
# The prior (AR) tokens are added per image token, so their ids and drop mask split like it. The attention
# processor concatenates `[text, image]` and applies RoPE to `[:, text_len:]`, the local text length. Text-to-image
# only: with condition images the pipeline prepends cached K/V of the reference tokens (`kv_caches` in "read" mode),
# a K/V length the sharded core rejects; without them the cache is inert. `attention_mask` is None in the pipeline.
_GLM_IMAGE = SequencePlan(
    split={
        "": {
            "encoder_hidden_states": SplitOrReplicate(split_dim=1, expected_dims=3),
            "prior_token_id": ContextParallelInput(split_dim=1, expected_dims=2),
            "prior_token_drop": ContextParallelInput(split_dim=1, expected_dims=2),
        },
        "image_projector.proj": {"input": ContextParallelInput(split_dim=1, expected_dims=3)},
        "rope": {
            0: ContextParallelInput(split_dim=0, expected_dims=2, split_output=True),
            1: ContextParallelInput(split_dim=0, expected_dims=2, split_output=True),
        },
        "proj_out": ContextParallelOutput(gather_dim=1, expected_dims=3),
    },
)

PLANS = {
    "BriaTransformer2DModel": _FLUX_LIKE,
    "ChromaTransformer2DModel": _FLUX_LIKE,  # Flux 1's splits; `attention_mask` stays whole (module docstring)
    "BriaFiboTransformer2DModel": _FIBO,
    "Flux2Transformer2DModel": _FLUX2,
    "Flux3Transformer2DModel": _FLUX3,
    "GlmImageTransformer2DModel": _GLM_IMAGE,
    "LongCatImageTransformer2DModel": _FLUX_LIKE,
    "OvisImageTransformer2DModel": _FLUX_LIKE,
}
