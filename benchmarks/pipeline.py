"""Time one whole generation, `pipe(...)`, at full size with random weights: prompt encoding, denoising and VAE decode
apart, with each stage's peak memory.

Every model is built from its released config written inline (nothing is downloaded): the transformer, the VAE and
the text encoders (random-init T5/UMT5, CLIP, Llama). Prompt encoding runs the text encoders on random token ids of
the pipeline's length (no tokenizer), and the pipeline gets the embeddings. Modes: `stock` (untouched pipeline) and
`usp` (`diffusers_usp.parallelize(pipe, vae=...)`), at whatever world size the launcher gives. Commands:

    python benchmarks/pipeline.py --workloads wan2.1-14b-480p-4step flux-dev-1024 --modes stock usp
    accelerate launch --num_processes 2 benchmarks/pipeline.py --modes usp --vae-split   # and --no-vae-split
    python benchmarks/pipeline.py --tiny    # CPU smoke run of every stage (tiny models)

Writes `--out` (JSON; records merged by workload, steps, tiling, mode, world, VAE split, device) and its `.md`.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

if __package__ in (None, ""):  # run as a script: use this checkout's diffusers_usp
    sys.path[:0] = [str(Path(__file__).resolve().parents[1])]

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from accelerate import PartialState  # noqa: E402

import diffusers_usp  # noqa: E402


@dataclass(frozen=True)
class Workload:
    family: str  # "wan", "flux" or "hunyuan_video"
    call: dict  # the pipeline call's size, steps and guidance
    tiny: bool = False


WAN = dict(height=480, width=832, num_frames=81)
WAN_720 = dict(height=720, width=1280, num_frames=81)
WORKLOADS = {
    # Wan2.1-T2V-14B: 50 steps with CFG (guidance 5: two transformer calls a step), and 4 steps without, as
    # step-distilled Wan runs (guidance 1 turns CFG off in WanPipeline).
    "wan2.1-14b-480p-50step-cfg": Workload("wan", dict(**WAN, num_inference_steps=50, guidance_scale=5.0)),
    "wan2.1-14b-480p-4step": Workload("wan", dict(**WAN, num_inference_steps=4, guidance_scale=1.0)),
    "wan2.1-14b-720p-50step-cfg": Workload("wan", dict(**WAN_720, num_inference_steps=50, guidance_scale=5.0)),
    "wan2.1-14b-720p-4step": Workload("wan", dict(**WAN_720, num_inference_steps=4, guidance_scale=1.0)),
    "flux-dev-1024": Workload("flux", dict(height=1024, width=1024, num_inference_steps=28, guidance_scale=3.5)),
    # HunyuanVideo 720p, 129 frames, 50 steps, embedded guidance (one transformer call a step)
    "hunyuanvideo-720p": Workload(
        "hunyuan_video", dict(height=720, width=1280, num_frames=129, num_inference_steps=50, guidance_scale=6.0)
    ),
    "tiny-wan": Workload(
        "wan", dict(height=96, width=96, num_frames=5, num_inference_steps=2, guidance_scale=5.0), True
    ),
    "tiny-flux": Workload("flux", dict(height=48, width=48, num_inference_steps=2, guidance_scale=3.5), True),
    "tiny-hunyuan_video": Workload(
        "hunyuan_video", dict(height=64, width=64, num_frames=9, num_inference_steps=2, guidance_scale=6.0), True
    ),
}

# The released text encoders' configs (umt5-xxl for Wan, t5-v1_1-xxl and CLIP ViT-L/14 for Flux, the Llama-3-8B
# based llava-llama-3 text tower and CLIP ViT-L/14 for HunyuanVideo), and tiny ones for --tiny.
T5_XXL = dict(d_model=4096, d_ff=10240, d_kv=64, num_heads=64, num_layers=24, feed_forward_proj="gated-gelu",
              relative_attention_num_buckets=32, relative_attention_max_distance=128)  # fmt: skip
T5_TINY = dict(d_model=32, d_ff=64, d_kv=8, num_heads=4, num_layers=2, feed_forward_proj="gated-gelu")
CLIP_L = dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
              max_position_embeddings=77, vocab_size=49408, projection_dim=768, hidden_act="quick_gelu")  # fmt: skip
CLIP_TINY = dict(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2,
                 max_position_embeddings=77, vocab_size=1000, projection_dim=32)  # fmt: skip
LLAMA_8B = dict(hidden_size=4096, intermediate_size=14336, num_attention_heads=32, num_key_value_heads=8,
                num_hidden_layers=32, vocab_size=128320, rms_norm_eps=1e-5, rope_theta=500000.0,
                max_position_embeddings=8192)  # fmt: skip
LLAMA_TINY = dict(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=64,
                  vocab_size=1000)  # fmt: skip
WAN_14B = dict(
    patch_size=(1, 2, 2), num_attention_heads=40, attention_head_dim=128, in_channels=16, out_channels=16,
    text_dim=4096, freq_dim=256, ffn_dim=13824, num_layers=40, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
    eps=1e-6,
)  # fmt: skip
FLUX_VAE = dict(block_out_channels=(128, 256, 512, 512), latent_channels=16, layers_per_block=2, norm_num_groups=32,
                use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.1159, scaling_factor=0.3611,
                down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)  # fmt: skip


def _made(cls, config: dict, device: torch.device, dtype: torch.dtype):
    """`cls(**config)` (diffusers) or `cls(cls.config_class(**config))` (transformers), seeded, initialised on
    `device` (14B parameters take minutes on a CPU) and cast as `from_pretrained(dtype=...)` does."""
    torch.manual_seed(0)
    with device:
        model = cls(cls.config_class(**config)) if hasattr(cls, "config_class") else cls(**config)
    keep = getattr(model, "_keep_in_fp32_modules", None) or []
    for name, param in model.named_parameters():
        param.data = param.data.to(torch.float32 if any(m in name.split(".") for m in keep) else dtype)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return model.eval()


def build(w: Workload, device: torch.device, dtype: torch.dtype):
    """`(pipeline, encode)`: `encode()` runs the text encoders and returns the pipeline's embedding arguments."""
    import diffusers
    import transformers

    from diffusers_usp import tiny

    t5 = T5_TINY if w.tiny else T5_XXL
    clip = CLIP_TINY if w.tiny else CLIP_L
    shift = 3.0 if w.call["height"] <= 480 else 5.0  # Wan's flow shift: 3 at 480p, 5 at 720p
    if w.family == "wan":
        pipe = tiny.tiny_wan_pipeline(dtype=dtype) if w.tiny else diffusers.WanPipeline(
            tokenizer=None, text_encoder=None, scheduler=diffusers.UniPCMultistepScheduler(
                prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=shift),
            vae=_made(diffusers.AutoencoderKLWan, {}, device, torch.float32),  # the Wan2.1 VAE is the default config
            transformer=_made(diffusers.WanTransformer3DModel, WAN_14B, device, dtype))  # fmt: skip
        dim = pipe.transformer.config.text_dim
        umt5 = _made(transformers.UMT5EncoderModel, {**t5, "vocab_size": 256384, "d_model": dim}, device, dtype)

        def encode():
            ids = torch.randint(0, 1000, (1, 512), device=device)
            out = {"prompt_embeds": umt5(ids).last_hidden_state}
            if w.call["guidance_scale"] > 1:
                out["negative_prompt_embeds"] = umt5(ids.flip(-1)).last_hidden_state
            return out

    elif w.family == "flux":
        pipe = tiny.tiny_flux_pipeline(dtype=dtype) if w.tiny else diffusers.FluxPipeline(
            scheduler=diffusers.FlowMatchEulerDiscreteScheduler(  # FLUX.1-dev's scheduler config
                shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256,
                max_image_seq_len=4096),
            vae=_made(diffusers.AutoencoderKL, FLUX_VAE, device, dtype), text_encoder=None, tokenizer=None,
            text_encoder_2=None, tokenizer_2=None,
            transformer=_made(diffusers.FluxTransformer2DModel, dict(guidance_embeds=True), device, dtype))  # fmt: skip
        cfg = pipe.transformer.config
        t5_model = _made(transformers.T5EncoderModel, {**t5, "vocab_size": 32128, "d_model": cfg.joint_attention_dim},
                         device, dtype)  # fmt: skip
        clip_model = _made(transformers.CLIPTextModel, {**clip, "hidden_size": cfg.pooled_projection_dim}, device,
                           dtype)  # fmt: skip

        def encode():
            pooled = clip_model(torch.randint(0, 1000, (1, 77), device=device)).pooler_output
            text = 16 if w.tiny else 512
            return {"prompt_embeds": t5_model(torch.randint(0, 1000, (1, text), device=device)).last_hidden_state,
                    "pooled_prompt_embeds": pooled}  # fmt: skip

    else:
        pipe = tiny.tiny_hunyuan_video_pipeline(dtype=dtype) if w.tiny else diffusers.HunyuanVideoPipeline(
            text_encoder=None, tokenizer=None, text_encoder_2=None, tokenizer_2=None,
            scheduler=diffusers.FlowMatchEulerDiscreteScheduler(shift=7.0),
            vae=_made(diffusers.AutoencoderKLHunyuanVideo, {}, device, dtype),
            transformer=_made(diffusers.HunyuanVideoTransformer3DModel, {}, device, dtype))  # fmt: skip
        cfg = pipe.transformer.config
        llama_cfg = {**(LLAMA_TINY if w.tiny else LLAMA_8B), "hidden_size": cfg.text_embed_dim}
        llama = _made(transformers.LlamaModel, llama_cfg, device, dtype)
        clip_model = _made(transformers.CLIPTextModel, {**clip, "hidden_size": cfg.pooled_projection_dim}, device,
                           dtype)  # fmt: skip

        def encode():
            # the pipeline's template adds 95 tokens, cropped after the encoder: 256 prompt tokens reach the model
            ids = torch.randint(0, 1000, (1, 256 + 95), device=device)
            hidden = llama(ids, output_hidden_states=True).hidden_states[-3][:, 95:]
            pooled = clip_model(torch.randint(0, 1000, (1, 77), device=device)).pooler_output
            mask = torch.ones(hidden.shape[:2], dtype=torch.long, device=device)
            return {"prompt_embeds": hidden, "pooled_prompt_embeds": pooled, "prompt_attention_mask": mask}

    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe, encode


class Stage:
    """Wall time (devices synchronised) and peak memory of one stage."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        self.seconds = time.perf_counter() - self.start
        self.peak_gib = torch.cuda.max_memory_allocated() / 2**30 if self.device.type == "cuda" else None


def generate(pipe, encode, w: Workload, device: torch.device) -> dict:
    """One `pipe(...)` call: `{stage: {"s": seconds, "peak_gib": ...}}` for prompt, denoise, vae_decode and total."""
    decode_time: dict = {}
    vae = pipe.vae
    original = vae.decode

    def timed_decode(*args, **kwargs):
        with Stage(device) as stage:
            out = original(*args, **kwargs)
        decode_time.update(s=stage.seconds, peak_gib=stage.peak_gib)
        return out

    vae.decode = timed_decode  # an instance attribute: the pipeline's `self.vae.decode(...)` finds it
    try:
        with torch.no_grad(), Stage(device) as total:
            with Stage(device) as prompt:
                embeds = encode()
            with Stage(device) as call:
                pipe(**embeds, **w.call, generator=torch.Generator().manual_seed(0), output_type="pt")
    finally:
        del vae.decode
    return {
        "prompt": {"s": prompt.seconds, "peak_gib": prompt.peak_gib},
        "denoise": {"s": call.seconds - decode_time["s"], "peak_gib": call.peak_gib},
        "vae_decode": decode_time,
        "total": {"s": total.seconds, "peak_gib": total.peak_gib},
    }


def markdown(records: list[dict]) -> str:
    rows = ["| workload | steps | mode | world | VAE split | VAE tiling | prompt | denoise | VAE decode | total "
            "| VAE share | peak GiB | device |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in records:
        s = r["stages"]
        peak = max((v["peak_gib"] or 0) for v in s.values())
        rows.append(f"| {r['workload']} | {r.get('steps', '')} | {r['mode']} | {r['world']} | {r['vae_split']} | "
                    f"{r.get('vae_tiling', False)} | "
                    f"{s['prompt']['s']:.2f} s | {s['denoise']['s']:.2f} s | {s['vae_decode']['s']:.2f} s | "
                    f"{s['total']['s']:.2f} s | {s['vae_decode']['s'] / s['total']['s']:.1%} | {peak:.1f} | "
                    f"{r['device']} |")  # fmt: skip
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=None, choices=sorted(WORKLOADS))
    parser.add_argument("--modes", nargs="+", default=["stock", "usp"], choices=["stock", "usp"])
    parser.add_argument("--vae-split", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--tiny", action="store_true", help="the tiny workloads, on CPU in float32")
    parser.add_argument("--repeat", type=int, default=1, help="timed calls after one warm-up call (0: one call)")
    parser.add_argument("--steps", type=int, default=None, help="override the workloads' step counts")
    parser.add_argument("--vae-tiling", action="store_true", help="`pipe.vae.enable_tiling()` (as HunyuanVideo's docs)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/pipeline.json"))
    args = parser.parse_args(argv)
    state = PartialState(cpu=not torch.cuda.is_available())
    device = state.device
    dtype = torch.float32 if args.tiny else torch.bfloat16
    names = args.workloads or [n for n, w in WORKLOADS.items() if w.tiny == args.tiny]
    records = []
    for name in names:
        for mode in args.modes:
            if mode == "stock" and state.num_processes > 1:
                continue  # stock diffusers runs on one process
            w = WORKLOADS[name]
            w = w if args.steps is None else replace(w, call={**w.call, "num_inference_steps": args.steps})
            pipe, encode = build(w, device, dtype)
            if args.vae_tiling:
                pipe.vae.enable_tiling()
            if mode == "usp":
                diffusers_usp.parallelize(pipe, vae=args.vae_split)
            runs = [generate(pipe, encode, w, device) for _ in range(1 + args.repeat)]
            runs = runs[1:] or runs
            best = min(runs, key=lambda r: r["total"]["s"])
            rec = dict(workload=name, steps=w.call["num_inference_steps"], vae_tiling=args.vae_tiling, mode=mode,
                       world=state.num_processes, vae_split=args.vae_split and mode == "usp",
                       device=torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                       stages=best)  # fmt: skip
            records.append(rec)
            if state.is_main_process:
                print(json.dumps(rec), flush=True)
            del pipe, encode
            gc.collect()  # the hook registries hold reference cycles: free this pipeline before building the next
            if device.type == "cuda":
                torch.cuda.empty_cache()
    if state.is_main_process:
        old = json.loads(args.out.read_text())["records"] if args.out.exists() else []
        key = lambda r: (
            r["workload"],
            r.get("steps"),
            r.get("vae_tiling", False),
            r["mode"],
            r["world"],
            r["vae_split"],
            r["device"],
        )  # noqa: E731
        merged = {key(r): r for r in old + records}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"records": list(merged.values())}, indent=1))
        args.out.with_suffix(".md").write_text(markdown(list(merged.values())))
    if dist.is_initialized():
        dist.barrier()
    return records


if __name__ == "__main__":
    main()
