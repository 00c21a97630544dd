"""Audio coverage cases: none proven yet; the reasons each audio transformer is not supported."""

from .base import Case

CASES: dict[str, Case] = {}
UNSUPPORTED = {
    "T5FilmDecoder": "its attention modules (`scale_qk=False`) default to diffusers' `AttnProcessor`, which computes "
    "attention with bmm (`get_attention_scores`), not SDPA",
    "StableAudioDiTModel": "a global token is prepended in the forward and dropped after `proj_out`: splitting the "
    "audio alone leaves that token's RoPE row and the output gather inexpressible, splitting the joint sequence needs "
    "a gather after the last block",
    "StableAudio3DiTModel": "learnable memory tokens (64 in the release) are prepended in the forward and sliced off "
    "before `proj_out`: the sharded sequence would need a gather after the last block",
    "AceStepTransformer1DModel": "a sliding-window (banded) attention mask on every other self-attention layer: "
    "needs masked USP",
    "LongCatAudioDiTTransformer": "the forward computes RoPE from the token count of the embedded audio and adds "
    "that embedding back after the blocks (long skip): split before, the RoPE rows start at 0 on every rank; split "
    "at the blocks, the skip mixes whole and sharded tokens",
    "MiniMaxMusic3Transformer1DModel": "a timestep token is prepended in the forward and sliced off before "
    "`proj_out`: the sharded sequence would need a gather after the last block",
    "MiniMaxMusic3RVQDepthDecoder": "causal self-attention over at most 8 codebook steps of an autoregressive depth "
    "decoder: no sequence to shard",
}
