"""LTX-2 plan: two sharded sequences, video and audio, with cross-attention between them.

Each block runs video self-attention (`attn1`) and audio self-attention (`audio_attn1`), each sharded over its own
sequence; cross-attention of each to its text (`attn2`, `audio_attn2`, text whole on every rank, no collective); then
audio-to-video attention (video queries, audio keys/values) and video-to-audio attention (the reverse). Those two
attend one sharded sequence from the other: the plan lists them in `two_sequences`, so one all-to-all brings this
rank both whole sequences for its heads (`two_sequences.py`).

Every RoPE table is split where the model builds it, at the output of its RoPE module: each attention applies the
query's table to its local queries and the key's table to its local keys before the exchange, so the (cos, sin)
tuples reach the attention modules already split on the query side and on the key side, each by its own sequence.
The tables are `[B, S, D]` (`rope_type="interleaved"`) or `[B, H, S, D / 2]` (`"split"`): the factory picks the
token dim from the config. diffusers' own `_cp_plan` for LTX-2 splits only the video RoPE (`rope`), so its audio
self-attention and a/v cross-attention would meet unsplit tables; it also splits the text, which suits its ring
attention, where here the text stays whole and its cross-attention needs no collective.

The timestep may be per token (`[B, S]`, the conditioning pipelines hold conditioned frames at t=0), so every
modulation tensor a block takes is `[B, 1, k * D]` (broadcast) or `[B, S, k * D]` (per video or per audio token):
`SplitUnlessBroadcast` splits the per-token ones like their tokens and leaves the broadcast ones whole. The output
modulation is built in `forward` for the whole sequence, so both streams are gathered at their output norm (per
token, so gathering its output is exact).

P need not divide either length (LTX-2's audio runs at 25 tokens a second: 126 for 121 frames at 24 fps), as long as
no rank holds as many tokens of one as of the other (`SequenceState.record_split` refuses that forward on every rank,
naming the lengths): each attention and each gather finds its sequence by the tokens the rank holds of it.
"""

from ..compat import ContextParallelInput, ContextParallelOutput
from .base import Refused, SequencePlan, SplitUnlessBroadcast

_TOKENS = ContextParallelInput(split_dim=1, expected_dims=3)
_PER_TOKEN = SplitUnlessBroadcast(split_dim=1, expected_dims=3)
_MODULATIONS = (
    "temb",
    "temb_audio",
    "temb_ca_scale_shift",
    "temb_ca_audio_scale_shift",
    "temb_ca_gate",
    "temb_ca_audio_gate",
    "temb_prompt",
    "temb_prompt_audio",
)
_ROPES = ("rope", "audio_rope", "cross_attn_rope", "cross_attn_audio_rope")


def _ltx2(transformer) -> SequencePlan:
    # (cos, sin): [B, S, D] interleaved, or [B, H, S, D / 2] split (per head)
    split = transformer.config.rope_type == "split"
    table = ContextParallelInput(split_dim=2 if split else 1, expected_dims=4 if split else 3, split_output=True)
    return SequencePlan(
        split={
            "": {
                "hidden_states": _TOKENS,
                "audio_hidden_states": _TOKENS,
                "video_keyframes_mask": _TOKENS,  # [B, S_video, 1], added per token after `proj_in`
                "video_self_attention_mask": Refused(
                    "LTX2VideoTransformer3DModel's `video_self_attention_mask` (IC-LoRA's [B, S, S] attention "
                    "strengths) reaches the attention processor, which pads a mask of the whole sequence to the "
                    "local token count; run the IC-LoRA pipeline without diffusers_usp.parallelize."
                ),
            },
            **{path: {0: table, 1: table} for path in _ROPES},
            "transformer_blocks.*": {name: _PER_TOKEN for name in _MODULATIONS},
            "norm_out": ContextParallelOutput(gather_dim=1, expected_dims=3),
            "audio_norm_out": ContextParallelOutput(gather_dim=1, expected_dims=3),
        },
        cross_attention=("transformer_blocks.*.attn2", "transformer_blocks.*.audio_attn2"),
        joint_attention=(),
        two_sequences=("transformer_blocks.*.audio_to_video_attn", "transformer_blocks.*.video_to_audio_attn"),
    )


PLANS = {"LTX2VideoTransformer3DModel": _ltx2}
