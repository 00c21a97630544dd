"""Models and rank tasks for `test_routing.py` and `test_remove.py`: attention paths that `parallelize` must run
exactly or refuse on every rank. Module-level, so that spawned ranks unpickle the tasks by name.

Every builder draws its weights and inputs from seeds, so each rank and the single-process reference hold the same
model and inputs without communicating.
"""

from __future__ import annotations

import torch
from diffusers import Transformer2DModel
from diffusers.models.attention_processor import SD3IPAdapterJointAttnProcessor2_0
from diffusers.models.transformers.transformer_flux import FluxAttnProcessor, FluxIPAdapterAttnProcessor
from diffusers.models.transformers.transformer_flux2 import Flux2KVAttnProcessor, Flux2KVParallelSelfAttnProcessor
from torch.profiler import profile
from zoo.base import seeded

from diffusers_usp import parallelize, remove_parallelism
from diffusers_usp.tiny import flux_transformer_inputs, tiny_flux_transformer

# Image-prompt tokens: a Flux or SD3 rank holds 24 / 4 = 6 image tokens at P=4, as many as there are image-prompt
# tokens, so a decision made by comparing token counts would take the image-prompt attention for self-attention.
IP_TOKENS = 6
IP_DIM = 24
REF_TOKENS = 8  # Flux2 reference-image tokens, before its 24 image tokens


def _forward(model: torch.nn.Module, inputs: dict) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs, return_dict=False)[0]


def _parallel_run(model: torch.nn.Module, inputs: dict) -> tuple[torch.Tensor, int]:
    """The output of the second forward under `parallelize` (the first adds the input check) and its all-to-alls."""
    parallelize(model)
    _forward(model, inputs)
    with profile() as prof:
        out = _forward(model, inputs)
    return out, sum(e.name == "gloo:all_to_all" for e in prof.events())


# -- IP-Adapters: a second kernel call per attention, to image-prompt tokens every rank holds whole -------------------


def ip_adapter(family: str, seed: int = 0) -> tuple[torch.nn.Module, dict]:
    """A tiny Flux or SD3 transformer whose joint blocks run the family's IP-Adapter processor, as diffusers'
    `load_ip_adapter` installs it, and inputs carrying `IP_TOKENS` image-prompt tokens (24 image tokens)."""
    import zoo

    g = torch.Generator().manual_seed(seed + 3)
    if family == "flux":
        model = tiny_flux_transformer(seed=seed)
        inputs = flux_transformer_inputs(model, height=4, width=6, text_len=8, seed=seed + 1)

        def processor():
            return FluxIPAdapterAttnProcessor(model.inner_dim, IP_DIM, num_tokens=(IP_TOKENS,), scale=0.7)

        inputs["joint_attention_kwargs"] = {"ip_hidden_states": [torch.randn(1, IP_TOKENS, IP_DIM, generator=g)]}
    else:
        model, inputs = zoo.build("SD3Transformer2DModel", seed)
        del inputs["block_controlnet_hidden_states"]
        heads, head_dim = model.config.num_attention_heads, model.config.attention_head_dim

        def processor():
            return SD3IPAdapterJointAttnProcessor2_0(heads * head_dim, IP_DIM, head_dim, 16, scale=0.6)

        inputs["joint_attention_kwargs"] = {
            "ip_hidden_states": torch.randn(1, IP_TOKENS, IP_DIM, generator=g),
            "temb": torch.randn(1, 16, generator=g),
        }
    # The joint blocks' `attn`, as `_convert_ip_adapter_attn_to_diffusers` does; the single blocks keep theirs.
    joint = [block.attn for block in model.transformer_blocks]
    for i, module in enumerate(joint):
        module.set_processor(seeded(seed + 2 + i, processor))
    return model, inputs


def ip_adapter_run(family: str) -> tuple[torch.Tensor, int]:
    return _parallel_run(*ip_adapter(family))


# -- a cross-attention called without its context ------------------------------------------------------------------


def unet_block_without_text(seed: int = 0) -> tuple[torch.nn.Module, dict]:
    """diffusers' `test_spatial_transformer_timestep`, smaller, with `use_linear_projection=True`: `cross_attention_dim`
    is set but no `encoder_hidden_states` is passed, so every `attn2` self-attends the image tokens (24 of them)."""
    config = dict(in_channels=8, num_attention_heads=2, attention_head_dim=8, norm_num_groups=4, num_layers=2,
                  cross_attention_dim=16, use_linear_projection=True, num_embeds_ada_norm=5)  # fmt: skip
    model = seeded(seed, lambda: Transformer2DModel(**config).eval())
    g = torch.Generator().manual_seed(seed + 1)
    return model, {"hidden_states": torch.randn(1, 8, 4, 6, generator=g), "timestep": torch.tensor(1)}


def unet_block_without_text_run() -> tuple[torch.Tensor, int]:
    return _parallel_run(*unet_block_without_text())


# -- Flux2's reference-image KV cache -------------------------------------------------------------------------------


def _flux2(kv_processors: bool):
    import zoo

    model, inputs = zoo.build("Flux2Transformer2DModel")
    if kv_processors:  # what Flux2KleinKVPipeline installs
        for block in model.transformer_blocks:
            block.attn.set_processor(Flux2KVAttnProcessor())
        for block in model.single_transformer_blocks:
            block.attn.set_processor(Flux2KVParallelSelfAttnProcessor())
    return model, inputs


def _with_reference_tokens(inputs: dict) -> dict:
    """`REF_TOKENS` reference-image tokens before the image tokens, on the next time plane, as the KV pipeline
    passes them at its first step."""
    g = torch.Generator().manual_seed(5)
    ref = torch.randn(1, REF_TOKENS, inputs["hidden_states"].shape[-1], generator=g)
    ref_ids = torch.zeros(1, REF_TOKENS, 4)
    ref_ids[..., 0] = 1
    ref_ids[..., -1] = torch.arange(REF_TOKENS)
    return inputs | {
        "hidden_states": torch.cat([ref, inputs["hidden_states"]], dim=1),
        "img_ids": torch.cat([ref_ids, inputs["img_ids"]], dim=1),
        "kv_cache_mode": "extract",
        "num_ref_tokens": REF_TOKENS,
    }


def flux2_kv_cache_outcomes() -> dict[str, str]:
    """How a parallel forward of each KV-cache mode ends, with the default and with the Klein KV processors: the
    error, or the output shape."""
    outcomes = {}
    for kv_processors in (False, True):
        for mode in ("extract", "cached"):
            model, inputs = _flux2(kv_processors)
            if mode == "extract":
                inputs = _with_reference_tokens(inputs)
            else:  # the cache the first step made, from an unparallelized copy
                source, source_inputs = _flux2(kv_processors=True)
                with torch.no_grad():
                    cache = source(**_with_reference_tokens(source_inputs), return_dict=False)[1]
                inputs = inputs | {"kv_cache": cache, "kv_cache_mode": "cached"}
            key = f"{mode}, {'Klein KV' if kv_processors else 'default'} processors"
            try:
                outcomes[key] = f"no error, output {tuple(_parallel_run(model, inputs)[0].shape)}"
            except ValueError as err:
                outcomes[key] = str(err)
    return outcomes


def flux2_helper_escape() -> str:
    """The Klein KV processors told to extract through `joint_attention_kwargs` (the forward's own `kv_cache_mode`
    left None): their `__call__` attends through `_flux2_kv_causal_attention`, which USP's routing cannot reach."""
    model, inputs = _flux2(kv_processors=True)
    inputs["joint_attention_kwargs"] = {"kv_cache_mode": "extract", "num_ref_tokens": 2}
    try:
        _parallel_run(model, inputs)
    except RuntimeError as err:
        return str(err)
    return "no error"


# -- a processor replaced after parallelize, and the undo ----------------------------------------------------------

SHAPE = dict(height=4, width=6, text_len=8)


def replaced_processor() -> str:
    model = tiny_flux_transformer()
    inputs = flux_transformer_inputs(model, **SHAPE)
    parallelize(model)
    model.transformer_blocks[1].attn.set_processor(FluxAttnProcessor())  # as a PAG pipeline's or a late IP-Adapter
    try:
        _forward(model, inputs)
    except RuntimeError as err:
        return str(err)
    return "no error"


def diffusers_parallelism_after() -> str:
    """Parallelize, then the state diffusers' `enable_parallelism` leaves: its resolved config on the model (which
    its own hooks then act on). The call itself cannot run on CPU in diffusers 0.42.1: it fails in
    `_resolve_parallel_config` (integer modulo by zero) before touching the model."""
    from diffusers import ContextParallelConfig, ParallelConfig

    model = tiny_flux_transformer()
    inputs = flux_transformer_inputs(model, **SHAPE)
    parallelize(model)
    model._parallel_config = ParallelConfig(context_parallel_config=ContextParallelConfig(ulysses_degree=2))
    try:
        _forward(model, inputs)
    except RuntimeError as err:
        return str(err)
    return "no error"


def backend_set_after_parallelize() -> tuple[set, float]:
    """`set_attention_backend` after `parallelize`: the backends the wrapped processors hold, and the max abs error of
    the parallel output against this model's single-process output."""
    model = tiny_flux_transformer()
    inputs = flux_transformer_inputs(model, **SHAPE)
    want = _forward(model, inputs)
    parallelize(model)
    model.set_attention_backend("_native_math")
    backends = {m.processor.processor._attention_backend for m in model.modules() if hasattr(m, "set_processor")}
    return backends, (_forward(model, inputs) - want).abs().max().item()


def _usp_hooks(model: torch.nn.Module) -> list[str]:
    return [
        f"{path}: {name}"
        for path, m in model.named_modules()
        if (registry := getattr(m, "_diffusers_hook", None)) is not None
        for name in registry.hooks
    ]


def remove_roundtrip() -> dict:
    """Parallelize a Flux transformer, run it, undo it, and compare it with a never-parallelized copy."""
    model, fresh = tiny_flux_transformer(), tiny_flux_transformer()
    inputs = flux_transformer_inputs(model, **SHAPE)
    originals = dict(model.attn_processors)
    parallelize(model)
    parallel = _forward(model, inputs)
    remove_parallelism(model)
    after, want = _forward(model, inputs), _forward(fresh, inputs)
    report = {
        "bit identical": torch.equal(after, want),
        "original processors": all(p is originals[name] for name, p in model.attn_processors.items()),
        "hooks left": _usp_hooks(model),
        "sequence state left": hasattr(model, "_usp_sequence"),
        "parallel error": (parallel - want).abs().max().item(),
    }
    parallelize(model)
    report["error when parallelized again"] = (_forward(model, inputs) - want).abs().max().item()
    remove_parallelism(remove_parallelism(model))  # twice: the second finds nothing to undo
    report["bit identical after the second undo"] = torch.equal(_forward(model, inputs), want)
    return report
