"""The memory table of docs/launching.md ("When to shard the weights"): weights and activations per rank, per model,
at P = 1, 2, 4 and 8, from exact parameter counts of the full-size configs instantiated on the meta device (nothing
downloaded, nothing allocated). `python benchmarks/weights.py --table` prints it."""

from __future__ import annotations

import torch
from diffusers import (
    Flux2Transformer2DModel,
    FluxTransformer2DModel,
    QwenImageTransformer2DModel,
    WanTransformer3DModel,
)

from diffusers_usp.weights import repeated_blocks

WAN_14B = dict(
    patch_size=(1, 2, 2), num_attention_heads=40, attention_head_dim=128, in_channels=16, out_channels=16,
    text_dim=4096, freq_dim=256, ffn_dim=13824, num_layers=40, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
    eps=1e-6,
)  # fmt: skip
T5_XXL = dict(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
              feed_forward_proj="gated-gelu")  # fmt: skip
BYTES = 2  # bf16
RANKS = (1, 2, 4, 8)
# Activations per token inside one block, in units of the model width D: the residual stream, its norm, the MLP's
# hidden and activated tensors (2 x mlp_ratio, mlp_ratio 3 to 4), and Q, K, V and the attention output after the
# exchange (each S/P x D in total). A forward frees each block's tensors before the next, so this is its peak.
ACTIVATION_WIDTHS = 12


def _text_encoders() -> dict[str, torch.nn.Module]:
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        Mistral3Config,
        Mistral3ForConditionalGeneration,
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        T5Config,
        T5EncoderModel,
        UMT5Config,
        UMT5EncoderModel,
    )

    qwen_vl_7b = Qwen2_5_VLConfig(
        text_config=dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                         num_key_value_heads=4, vocab_size=152064),
        vision_config=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584),
    )  # fmt: skip
    mistral_24b = Mistral3Config(text_config=dict(model_type="mistral", hidden_size=5120, intermediate_size=32768,
                                                  num_hidden_layers=40, num_attention_heads=32, num_key_value_heads=8,
                                                  head_dim=128, vocab_size=131072),
                                 tie_word_embeddings=False)  # fmt: skip
    return {
        "T5-XXL": T5EncoderModel(T5Config(**T5_XXL)),
        "CLIP-L": CLIPTextModel(
            CLIPTextConfig(
                hidden_size=768,
                intermediate_size=3072,
                num_hidden_layers=12,
                num_attention_heads=12,
                projection_dim=768,
            )
        ),  # fmt: skip
        "UMT5-XXL": UMT5EncoderModel(UMT5Config(**dict(T5_XXL, vocab_size=256384))),
        "Qwen2.5-VL-7B": Qwen2_5_VLForConditionalGeneration(qwen_vl_7b),
        "Mistral-Small-24B": Mistral3ForConditionalGeneration(mistral_24b),
    }


# model: (transformers as (class, config), text encoders, workload, its tokens S, width D)
MODELS = {
    "FLUX.1-dev": ([(FluxTransformer2DModel, dict(guidance_embeds=True))], ["T5-XXL", "CLIP-L"], "1024²", 4096 + 512,
                   3072),
    "FLUX.2-dev": ([(Flux2Transformer2DModel, {})], ["Mistral-Small-24B"], "1024²", 4096 + 512, 6144),
    "Qwen-Image": ([(QwenImageTransformer2DModel, {})], ["Qwen2.5-VL-7B"], "1328²", 83 * 83 + 256, 3072),
    "Wan2.1-14B": ([(WanTransformer3DModel, WAN_14B)], ["UMT5-XXL"], "720p, 81 frames", 75600, 5120),
    "Wan2.2-A14B": ([(WanTransformer3DModel, WAN_14B)] * 2, ["UMT5-XXL"], "720p, 81 frames", 75600, 5120),
}  # fmt: skip


def _sizes(model: torch.nn.Module) -> tuple[int, int, int]:
    """(parameters, largest block's, the rest's: what is not in a repeated block)."""
    total = sum(p.numel() for p in model.parameters())
    blocks = [sum(p.numel() for p in block.parameters()) for blocks in repeated_blocks(model) for block in blocks]
    return total, max(blocks), total - sum(blocks)


def rows() -> list[dict]:
    with torch.device("meta"):
        encoders = {name: _sizes(m) for name, m in _text_encoders().items()}
        out = []
        for name, (transformers, texts, workload, tokens, width) in MODELS.items():
            sizes = [_sizes(cls(**config)) for cls, config in transformers]
            transformer = sum(s[0] for s in sizes)
            text = sum(encoders[t][0] for t in texts)
            # In a forward: the shards, plus the rest whole (the root unit stays gathered through the forward) and
            # 2 blocks whole (the running one and the prefetched next one). One transformer runs at a time.
            in_flight = max(s[2] + 2 * s[1] for s in sizes)
            out.append(dict(model=name, transformer=transformer, text=text, texts=texts, in_flight=in_flight,
                            workload=workload, tokens=tokens, width=width))  # fmt: skip
    return out


def markdown_table() -> str:
    gb = 1e9
    lines = [
        "| model (text encoders) | parameters | weights per rank, P = 1 / 2 / 4 / 8 | peak weights in a forward, "
        "P = 2 / 4 / 8 | activations per rank (workload), P = 1 / 2 / 4 / 8 |",
        "|---|---|---|---|---|",
    ]
    for r in rows():
        total = r["transformer"] + r["text"]
        stored = " / ".join(f"{total * BYTES / p / gb:.1f}" for p in RANKS)
        peak = " / ".join(f"{(total / p + r['in_flight'] * (1 - 1 / p)) * BYTES / gb:.1f}" for p in RANKS[1:])
        act = " / ".join(f"{ACTIVATION_WIDTHS * r['tokens'] / p * r['width'] * BYTES / gb:.2f}" for p in RANKS)
        lines.append(
            f"| {r['model']} ({', '.join(r['texts'])}) | {r['transformer'] / 1e9:.1f}B + {r['text'] / 1e9:.1f}B | "
            f"{stored} GB | {peak} GB | {act} GB ({r['workload']}, {r['tokens']} tokens) |"
        )
    return "\n".join(lines)
