"""PRX's plan: image queries against `[text, image]` keys, the text a replicated K/V prefix.

PRX has no joint text stream: its blocks update the image tokens only, and each attention projects the (projected,
never updated) text to keys and values that it puts before the image's, `cat([text, image])`, while the queries are
the image tokens alone. So the text stays whole on every rank and each sharded attention attends it as a replicated
K/V prefix (`SequencePlan.kv_prefix`: never sent, each rank slices its own heads). The processor's padding mask is
`[B, 1, 1, T + local image]`, built from the whole text mask and the local image count: a key mask over the prefix
and the local keys, which the core splits between them.

The forward patchifies with plain tensor code, so the split sits on the output of `img_in` (a linear, or PRX-7B's
two-layer bottleneck); the RoPE table `[B, 1, S, D/2, 2, 2]` comes from `pe_embedder` over the whole grid and splits
on its token dim there. The gather sits on `final_layer`'s output, before `seq2img` reshapes to the grid.
"""

from ..compat import ContextParallelInput, ContextParallelOutput
from .base import SequencePlan

PRX = SequencePlan(
    split={
        "img_in": {0: ContextParallelInput(split_dim=1, expected_dims=3, split_output=True)},
        "pe_embedder": {0: ContextParallelInput(split_dim=2, expected_dims=6, split_output=True)},
        "final_layer": ContextParallelOutput(gather_dim=1, expected_dims=3),
    },
    kv_prefix=("blocks.*.attention",),
)

PLANS = {"PRXTransformer2DModel": PRX}
