"""Audio plans: 1-D latent sequences with extra tokens prepended inside `forward` (a global or timestep token, memory
tokens) and sliced off after the blocks.

Those tokens join the audio before the first block, so the split sits on the first block's input (the joint
sequence) and the gather on the last block's output ("transformer_blocks.-1", whatever the config's depth), before
`forward` drops the prepended rows with plain tensor code. RoPE tables cover the joint sequence and split with it.
"""

from ..compat import ContextParallelInput, ContextParallelOutput
from .base import SequencePlan, SplitTail, TokenCount

_TOKENS = ContextParallelInput(split_dim=1, expected_dims=3)
_GATHER = ContextParallelOutput(gather_dim=1, expected_dims=3)
_ROPE_ROWS = ContextParallelInput(split_dim=0, expected_dims=2)
_ROPE_OUT = ContextParallelInput(split_dim=0, expected_dims=2, split_output=True)

# Stable Audio Open: [global token | audio]. The pipeline passes the `(cos, sin)` RoPE tables ([1 + L, D] each) to
# `forward`, which hands them whole to every block, so each block splits its own. The self-attention padding mask
# ([B, 1 + L], None in `StableAudioPipeline`) splits like the keys, but the processor repeats it per head, a shape
# the sharded attention refuses with a message. Cross-attention (`attn2`) reads the whole text.
STABLE_AUDIO = SequencePlan(
    split={
        "transformer_blocks.0": {"hidden_states": _TOKENS},
        "transformer_blocks.*": {
            "rotary_embedding": (_ROPE_ROWS, _ROPE_ROWS),
            "attention_mask": ContextParallelInput(split_dim=1, expected_dims=2),
        },
        "transformer_blocks.-1": _GATHER,
    },
    cross_attention=("transformer_blocks.*.attn2",),
)

# Stable Audio 3: [memory tokens | audio]. The RoPE table ([M + L, D]) comes from one module call, split at its
# output; it must be, since the processor takes the *last* rows of the table for its tokens (`freqs[-S:]`), which on
# a whole table would be the last rank's rows on every rank.
# Inpainting's `local_seq` ([B, L, C]) covers the audio rows only, which each block adds after the first
# `num_memory_tokens` rows: each rank keeps the `local_seq` rows of the audio tokens it holds (`SplitTail`) and is
# given the count of memory tokens it holds (`TokenCount`), so `x[:, count:] + local` pairs the same tokens as on
# one process, whatever P and the lengths. The table split at `rotary_pos_emb` is the sequence both refer to.
STABLE_AUDIO3 = SequencePlan(
    split={
        "rotary_pos_emb": {0: _ROPE_OUT},
        "transformer_blocks.0": {"hidden_states": _TOKENS},
        "transformer_blocks.*": {
            "local_seq": SplitTail(split_dim=1, expected_dims=3),
            "num_memory_tokens": TokenCount(),
        },
        "transformer_blocks.-1": _GATHER,
    },
    cross_attention=("transformer_blocks.*.cross_attn",),
)

# MiniMax Music 3: [timestep token | audio], self-attention only. `rotary_emb` returns `(cos, sin)` for the joint
# sequence ([1 + L, D] each), split at its output. Its forward is cached per length; the split narrows views of the
# cached tables and never writes them.
MINIMAX_MUSIC3 = SequencePlan(
    split={
        "rotary_emb": {0: _ROPE_OUT, 1: _ROPE_OUT},
        "transformer_blocks.0": {"hidden_states": _TOKENS},
        "transformer_blocks.-1": _GATHER,
    },
)

PLANS = {
    "StableAudioDiTModel": STABLE_AUDIO,
    "StableAudio3DiTModel": STABLE_AUDIO3,
    "MiniMaxMusic3Transformer1DModel": MINIMAX_MUSIC3,
}
