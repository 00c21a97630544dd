"""Every attention path under `parallelize` is exact or refused on every rank, never a plausible wrong tensor:
kernel calls that escape the processor's rebinding, modes the sharding cannot follow, a cross-attention
called without its context, IP-Adapters' second kernel call, processors replaced after `parallelize`. Exact means
equal to the single-process output in float32, max abs error <= 1e-5.
"""

import ast
import inspect
import sys
import textwrap

import diffusers
import pytest
import torch
import torch.nn.functional as F
from diffusers.models.attention_dispatch import AttentionBackendName, dispatch_attention_fn
from tasks import routing as rc

from diffusers_usp import parallelize
from diffusers_usp.plans import PLANS

WORLDS = (2, 3, 4)
_REFERENCES: dict[str, torch.Tensor] = {}


def _reference(key: str, build) -> torch.Tensor:
    if key not in _REFERENCES:
        _REFERENCES[key] = rc._forward(*build())
    return _REFERENCES[key]


# Sharded attentions per forward, at 2 all-to-alls each: Flux's 2 joint and 2 single blocks, the image-prompt call
# local (none); SD3's `attn` in 2 blocks and the first block's `attn2`, plus the image-prompt call of each `attn`,
# a sharded self-attention over the image with the image-prompt K/V as a replicated block.
_IP_ALL_TO_ALLS = {"flux": 2 * 4, "sd3": 2 * (3 + 2)}


@pytest.mark.parametrize("world", WORLDS)
@pytest.mark.parametrize("family", ["flux", "sd3"])
def test_ip_adapter_is_exact(pools, family, world):
    """Catches the IP-Adapter's second kernel call (sharded image queries against image-prompt K/V that every rank
    holds whole) taken for sharded self-attention: Flux raised at P=2 and 3 ("query tokens but key tokens") and passed
    at P=4 only because a rank's 6 image tokens matched the 6 image-prompt tokens, sending the replicated K/V through
    the all-to-all (the all-to-all count catches that). SD3's second call attends `[image, image-prompt]` keys."""
    want = _reference(f"ip-{family}", lambda: rc.ip_adapter(family))
    for rank, (out, all_to_alls) in enumerate(pools(world).run(rc.ip_adapter_run, family)):
        err = (out - want).abs().max().item()
        assert err <= 1e-5, f"rank {rank}: max abs error {err:.3g}"
        assert all_to_alls == _IP_ALL_TO_ALLS[family]


@pytest.mark.parametrize("world", WORLDS)
def test_cross_attention_without_its_context_self_attends_exactly(pools, world):
    """Catches a module the plan lists as local (cross-attention to replicated text) called without its text:
    diffusers' `attn2` then self-attends the image tokens, and attended locally each rank saw only its own tokens
    (max abs error ~1e-2 at P=2, 3, 4). Such a call now runs as sharded self-attention: 2 all-to-alls for each of
    the 2 blocks' `attn1` and `attn2`."""
    want = _reference("unet-block", rc.unet_block_without_text)
    for rank, (out, all_to_alls) in enumerate(pools(world).run(rc.unet_block_without_text_run)):
        err = (out - want).abs().max().item()
        assert err <= 1e-5, f"rank {rank}: max abs error {err:.3g}"
        assert all_to_alls == 2 * 2 * 2


@pytest.mark.parametrize("world", WORLDS)
def test_flux2_kv_cache_modes_are_refused_on_every_rank(pools, world):
    """Catches Flux2's reference-image KV cache run on sharded tokens: "extract" returned an output of the wrong
    length with no error ((1, 8, 16) for (1, 16, 16) at P=2; the forward cuts the reference tokens out by
    their whole count), whichever processors are installed; "cached" attends the cached K/V through a helper USP
    cannot reach."""
    for outcomes in pools(world).run(rc.flux2_kv_cache_outcomes):
        assert len(outcomes) == 4
        for key, outcome in outcomes.items():
            mode = key.split(",")[0]
            assert f"`kv_cache_mode='{mode}'` is not supported under parallelize" in outcome, key
            assert "The default mode works" in outcome


def test_wrapped_processors_keep_every_keyword_they_take():
    """Catches keyword arguments diffusers would drop for the wrapper but not for the processor it wraps (attention
    modules keep only what `inspect.signature(processor.__call__)` names): Flux2's Klein KV processors take `kv_cache`,
    `kv_cache_mode` and `num_ref_tokens`, which dropped would run the KV modes as the default mode without a word.
    With one process those modes stay exact no-ops (bit for bit)."""
    model, inputs = rc._flux2(kv_processors=True)
    stock, _ = rc._flux2(kv_processors=True)
    originals = {path: m.processor for path, m in model.named_modules() if hasattr(m, "set_processor")}
    parallelize(model)
    for path, original in originals.items():
        wrapper = model.get_submodule(path).processor
        assert inspect.signature(wrapper.__call__) == inspect.signature(original.__call__), path
    assert {"kv_cache", "kv_cache_mode", "num_ref_tokens"} <= set(
        inspect.signature(model.transformer_blocks[0].attn.processor.__call__).parameters
    )
    inputs = rc._with_reference_tokens(inputs)
    assert torch.equal(rc._forward(model, inputs), rc._forward(stock, inputs))


def test_kernel_call_outside_the_processor_call_is_refused(pools):
    """Catches a processor whose attention runs through a helper function (Flux2's Klein KV processors told to
    extract through `joint_attention_kwargs`): the helper calls diffusers' real kernel on this rank's tokens only,
    which the rebinding of the processor's `__call__` cannot see. Every rank raises, naming model, module and mode."""
    for message in pools(2).run(rc.flux2_helper_escape):
        assert "Flux2Transformer2DModel `transformer_blocks.0.attn` (sharded)" in message
        assert "Flux2KVAttnProcessor, attended through code outside its own `__call__`" in message


def test_processor_replaced_after_parallelize_is_refused(pools):
    """Catches a processor set after `parallelize` (a PAG pipeline's, a late IP-Adapter's, `fuse_qkv_projections`'):
    it would attend this rank's tokens only. Every rank raises before any collective."""
    for message in pools(2).run(rc.replaced_processor):
        assert "FluxTransformer2DModel `transformer_blocks.1.attn`" in message
        assert "replaced by FluxAttnProcessor after diffusers_usp.parallelize()" in message


def test_diffusers_parallelism_after_parallelize_is_refused(pools):
    """Catches diffusers' `enable_parallelism` after `parallelize`: its hooks would split the already split sequence
    again, and its config never reaches the processors USP wraps. Every rank raises before any collective."""
    for message in pools(2).run(rc.diffusers_parallelism_after):
        assert "FluxTransformer2DModel was given diffusers' own parallelism" in message, message


def test_attention_backend_set_after_parallelize_reaches_the_wrapped_processors(pools):
    """Catches `set_attention_backend` stopping at the USP wrapper, leaving the processors that make the kernel call
    on their old backend."""
    for backends, err in pools(2).run(rc.backend_set_after_parallelize):
        assert backends == {AttentionBackendName._NATIVE_MATH}
        assert err <= 1e-5


# -- kernel calls that the rebinding of a processor's `__call__` cannot reach --------------------------------------

_KERNELS = {"dispatch_attention_fn", "scaled_dot_product_attention", "flex_attention"}

# Kernel calls outside a processor's `__call__` in the modules planned models are built from, each handled.
HANDLED = {
    "diffusers.models.transformers.transformer_flux2._flux2_kv_causal_attention": (
        "Flux2's reference-image KV cache: the plan refuses the forward's `kv_cache_mode`, and a processor that "
        "reaches the helper otherwise raises after the call (no kernel call was routed through USP)"
    ),
    "diffusers.models.embeddings.MochiAttentionPool.forward": (
        "Mochi's text pooling: embeddings.py is scanned because planned models import from it, but only "
        "MochiTransformer3DModel, which has no plan, builds this module"
    ),
}


def _kernel_calls(fn) -> list[str]:
    """The kernel calls written in `fn`'s source (nested functions included), as source text."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError):
        return []
    calls = [node.func for node in ast.walk(tree) if isinstance(node, ast.Call)]
    return [ast.unparse(f) for f in calls if getattr(f, "id", getattr(f, "attr", None)) in _KERNELS]


def _routed(call: str, fn) -> bool:
    """Whether `USPProcessor._rebind` reroutes this call of `fn`: `dispatch_attention_fn(...)` or
    `<global alias of torch.nn.functional>.scaled_dot_product_attention(...)`."""
    base, _, attr = call.rpartition(".")
    scope, local = fn.__globals__, fn.__code__.co_varnames
    if not base:
        return call == "dispatch_attention_fn" and scope.get(call) is dispatch_attention_fn and call not in local
    return attr == "scaled_dot_product_attention" and scope.get(base) is F and base not in local


def _planned_modules() -> dict[str, object]:
    """The module of every planned class, and the diffusers modules its classes come from (blocks, attention
    modules, processors, embeddings)."""
    modules = {}
    for name in PLANS:
        module = sys.modules[getattr(diffusers, name).__module__]
        modules[module.__name__] = module
        for value in vars(module).values():
            if inspect.isclass(value) and value.__module__.startswith("diffusers."):
                modules[value.__module__] = sys.modules[value.__module__]
    modules.pop("diffusers.models.attention_dispatch", None)  # the kernels themselves
    return modules


def test_no_unhandled_kernel_call_escapes_the_processor():
    """Catches a diffusers model (new, or changed by an upgrade) that attends through code the processor rebinding
    cannot reach: a helper function or a method other than a processor's `__call__` that calls a kernel, or a
    processor `__call__` that calls one under another name. Under `parallelize` such a call attends only this rank's
    tokens. Add each new one to HANDLED once it is supported or refused, with the reason."""
    found = {}
    for module_name, module in _planned_modules().items():
        for name, value in vars(module).items():
            if getattr(value, "__module__", None) != module_name:
                continue  # imported here, scanned where it is defined
            if inspect.isfunction(value) and _kernel_calls(value):
                found[f"{module_name}.{name}"] = _kernel_calls(value)
            if not inspect.isclass(value):
                continue
            for method_name, method in vars(value).items():
                if not inspect.isfunction(method) or not (calls := _kernel_calls(method)):
                    continue
                if method_name == "__call__":
                    calls = [call for call in calls if not _routed(call, method)]
                if calls:
                    found[f"{module_name}.{name}.{method_name}"] = calls
    assert sorted(found) == sorted(HANDLED), f"kernel calls outside a processor's __call__: {found}"
