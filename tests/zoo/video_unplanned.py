"""Video transformers without a plan, each with its reason."""

from .base import Case

CASES: dict[str, Case] = {}
UNSUPPORTED = {
    "LatteTransformer3DModel": "the temporal blocks' AdaLN timestep is built in the forward as one row per (sample, "
    "patch), `[B*H*W, 6C]`: no contiguous split of it matches a rank's patches of every sample, so batch > 1 with "
    "per-sample timesteps would modulate with other samples' rows (exact only for batch 1 or one shared timestep, "
    "as LattePipeline passes; needs a split of one dim viewed as `[B, H*W]`)",
    "MotifVideoTransformer3DModel": "image-to-video joins the SigLIP image tokens to the text in the forward, and "
    "decoder layers reuse the video as the joint text: two joint parts whose split-or-replicate choices one plan "
    "cannot keep consistent (text-to-video alone would be exact)",
}
