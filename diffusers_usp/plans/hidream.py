"""HiDream-I1: image tokens sharded, the text whole on every rank at every P, after the image in every attention.

The forward patchifies, embeds (`x_embedder`: split its input), and builds one RoPE table over `[image, text]`
(`pe_embedder` on `cat(img_ids, txt_ids)`): `SplitFront` keeps this rank's image rows and every text row. The text
(T5, the last Llama layer, and a per-block Llama layer, concatenated again before every block) is never split, so
each attention's sequence is `[image chunk, whole text]`: a replicated block at the back (`replicated_front=False`),
sliced by head locally, whose output rows the output all-to-all carries. The image key scale of non-square latents
(`hidden_states_masks`, `[B, N]` to the double-stream blocks, `[B, N + T]` to the single-stream ones) splits with the
image rows. The output is gathered at `final_layer`, before `unpatchify` (which needs the whole image).
"""

from ..compat import ContextParallelInput, ContextParallelOutput
from .base import SequencePlan
from .joint_specs import SplitFront

_HIDREAM = SequencePlan(
    split={
        "x_embedder": {"latent": ContextParallelInput(split_dim=1, expected_dims=3)},
        "pe_embedder": {0: SplitFront(split_dim=1, expected_dims=6, split_output=True)},
        "double_stream_blocks.*": {"hidden_states_masks": ContextParallelInput(split_dim=1, expected_dims=2)},
        "single_stream_blocks.*": {"hidden_states_masks": SplitFront(split_dim=1, expected_dims=2)},
        "final_layer": ContextParallelOutput(gather_dim=1, expected_dims=3),
    },
    replicated_front=False,
)

PLANS = {"HiDreamImageTransformer2DModel": _HIDREAM}
