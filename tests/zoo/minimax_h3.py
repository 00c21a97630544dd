"""MiniMax-H3 coverage (packed multimodal sequence), and why AnyFlow-FAR has no plan."""

import torch

from .base import Case, randn


def _minimax_h3_inputs(model, g, text=6, video=12, audio=6):
    # 24 packed rows, the three modalities interleaved by a random permutation so that every rank's slice mixes
    # them: the scatter into the buffer, the per-row AdaLN table rows and the output row selection all have to
    # follow the split. Two noise levels: clean conditioning rows (text, first video rows) and the target rows.
    cfg = model.config
    rows = torch.randperm(text + video + audio, generator=g)
    text_indices, video_indices, audio_indices = rows.split([text, video, audio])
    token_tags = torch.empty(text + video + audio, dtype=torch.long)
    token_tags[video_indices], token_tags[text_indices], token_tags[audio_indices] = 0, 1, 2
    timestep_indices = torch.ones_like(token_tags)
    timestep_indices[text_indices] = timestep_indices[video_indices[:4]] = 0
    return {
        "hidden_states": randn(g, 1, video, cfg.in_channels * 4),
        "audio_hidden_states": randn(g, 1, audio, cfg.audio_in_channels),
        "encoder_hidden_states": randn(g, 1, text, cfg.text_dim),
        "timestep": torch.tensor([0.0, 0.7]),
        "timestep_indices": timestep_indices,
        "token_tags": token_tags,
        "position_ids": torch.randint(0, 8, (text + video + audio, 3), generator=g),
        "video_indices": video_indices,
        "audio_indices": audio_indices,
        "text_indices": text_indices,
    }


CASES = {
    "MiniMaxH3Transformer3DModel": Case(
        config=dict(
            num_attention_heads=4,
            attention_head_dim=16,
            hidden_size=32,
            num_layers=2,
            num_refiner_layers=1,
            ffn_dim=32,
            in_channels=4,
            audio_in_channels=4,
            patch_size=(1, 2, 2),
            text_dim=16,
            freq_dim=16,
            time_embed_hidden_dim=32,
            time_embed_dim=16,
            rope_freq_dim=2,
        ),
        inputs=_minimax_h3_inputs,
    ),
}
UNSUPPORTED = {
    "AnyFlowFARTransformer3DModel": (
        "chunk-causal flex block-masked self-attention with a KV cache: needs causal/masked USP (its dict RoPE "
        "tables split like AnyFlow's)"
    ),
}
