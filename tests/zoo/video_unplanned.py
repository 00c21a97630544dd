"""Video transformers without a plan, each with its reason."""

from .base import Case

CASES: dict[str, Case] = {}
UNSUPPORTED = {
    "MotifVideoTransformer3DModel": "image-to-video joins the SigLIP image tokens to the text in the forward, and "
    "decoder layers reuse the video as the joint text: two joint parts whose split-or-replicate choices one plan "
    "cannot keep consistent (text-to-video alone would be exact)",
}
