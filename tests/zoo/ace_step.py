"""ACE-Step coverage (plan in `diffusers_usp/plans/ace_step.py`): a banded self-attention layer, then a full one."""

from .base import Case, randn
from .ernie_image import _unzero


def _ace_step_inputs(model, g, batch=1, length=48, text=10):
    """48 latent frames, patched by 2 into 24 tokens; a window of 4 tokens each side, so the band cuts across every
    rank's chunk at 2, 3 and 4 ranks."""
    cfg = model.config
    _unzero(model, g)
    acoustic = cfg.audio_acoustic_hidden_dim
    return {
        "hidden_states": randn(g, batch, length, acoustic),
        "timestep": randn(g, batch).abs(),
        "timestep_r": randn(g, batch).abs(),
        "encoder_hidden_states": randn(g, batch, text, cfg.hidden_size),
        "context_latents": randn(g, batch, length, cfg.in_channels - acoustic),
    }


# diffusers' test config (GQA: 4 query heads, 2 key/value heads), with a window shorter than the sequence.
ACE_STEP_CONFIG = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, head_dim=8, in_channels=24, audio_acoustic_hidden_dim=8, patch_size=2,
                       rope_theta=10000.0, rms_norm_eps=1e-6, sliding_window=4)  # fmt: skip

CASES = {
    "AceStepTransformer1DModel": Case(
        config=ACE_STEP_CONFIG,
        inputs=_ace_step_inputs,
        limits="a flash attention backend together with a ring (`ring_degree` > 1): the sliding window then reaches "
        "the kernel as `attention_kwargs`, which the ring's kernels do not take (tests/test_plan_refusals.py)",
    )
}
UNSUPPORTED: dict[str, str] = {}
