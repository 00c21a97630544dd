"""One test per private diffusers or torch name that `diffusers_usp/compat.py` touches, so that an upgrade that moves
one fails here, by name, instead of deep inside a forward. And the layering rule: the communication and attention
core imports nothing from diffusers."""

from __future__ import annotations

import ast
import pathlib

import tasks.core
import torch
import torch.distributed as dist
from diffusers.hooks import HookRegistry, ModelHook
from diffusers.models.cache_utils import CacheMixin

from diffusers_usp import compat
from diffusers_usp.cfg.hook import CFGHook
from diffusers_usp.groups import Group

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "diffusers_usp"
# The core: collectives, head layouts, the attention entries and kernels, process groups and the compat layer itself.
CORE = (
    "comm.py", "ulysses.py", "ring.py", "lse.py", "attention.py", "token_mask.py", "linear_attention.py",
    "separable.py", "groups.py", "compat.py", "intercept.py", "layout.py",
)  # fmt: skip


def _top_level_imports(path: pathlib.Path) -> set[str]:
    names = set()
    for node in ast.parse(path.read_text()).body:  # module level only: compat imports diffusers lazily, on first use
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))
    return names


def test_core_imports_nothing_from_diffusers():
    """The core must stay usable and testable without diffusers: a diffusers import creeping into it (say, a type
    for a hint) would tie the all-to-all to diffusers' release cycle."""
    for name in CORE:
        imported = _top_level_imports(PACKAGE / name)
        assert not any(m == "diffusers" or m.startswith("diffusers.") for m in imported), (name, imported)
        # and not through another package module that does: the core imports only the core
        local = {m.lstrip(".") + ".py" for m in imported if m.startswith(".")}
        assert local <= set(CORE), (name, local - set(CORE))


def test_plan_format_is_diffusers_cp_plan_classes():
    """`_modeling_parallel.ContextParallelInput/Output` keep the fields our plans and hooks read."""
    spec = compat.ContextParallelInput(split_dim=1, expected_dims=3, split_output=False)
    assert (spec.split_dim, spec.expected_dims, spec.split_output) == (1, 3, False)
    assert compat.ContextParallelOutput(gather_dim=1).gather_dim == 1
    assert compat.ContextParallelModelPlan is not None


def test_functional_all_to_all_single_exists():
    """`_functional_collectives.all_to_all_single(x, out_sizes, in_sizes, group)`: the ring's shift under compile."""
    import inspect

    params = list(inspect.signature(compat.funcol.all_to_all_single).parameters)
    assert params[:4] == ["self", "output_split_sizes", "input_split_sizes", "group"]


def test_all_gather_single_is_a_collective():
    assert compat.all_gather_single in (getattr(dist, "all_gather_single", None), dist.all_gather_into_tensor)


def test_lse_kernels_are_registered_ops():
    """The aten ops the ring's CUDA path calls exist under these names (their CUDA behaviour: tests/test_cuda.py)."""
    for op in (compat.sdpa_cudnn_lse, compat.sdpa_flash_lse, compat.sdpa_efficient_lse):
        assert op.default is not None


def test_no_subclass_dispatch_reads_a_subclass_plainly():
    class Loud(torch.Tensor):
        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            raise AssertionError("dispatched")

    x = torch.zeros(2).as_subclass(Loud)
    with compat.no_subclass_dispatch():
        assert x.sum().item() == 0


def test_group_timeout_reads_the_backend_option(pools):
    """`ProcessGroup._get_backend(device).options._timeout`: the timeout the CFG and ring groups inherit."""
    assert pools(2).run(tasks.core.new_group_timeout, 42) == [42.0, 42.0]


class _Named(ModelHook):
    pass


def test_hook_order_and_moving_a_hook_outermost():
    """`HookRegistry._hook_order`: innermost first; `move_outermost` re-registers a hook last."""
    module = torch.nn.Linear(2, 2)
    assert compat.hook_registry(module) is None and compat.hook_names(module) == []
    registry = HookRegistry.check_if_exists_or_initialize(module)
    registry.register_hook(_Named(), "a")
    registry.register_hook(_Named(), "b")
    assert compat.hook_registry(module) is registry and compat.hook_names(module) == ["a", "b"]
    compat.move_outermost(module, "a")
    assert compat.hook_names(module) == ["b", "a"]
    assert module(torch.zeros(1, 2)).shape == (1, 2)  # still callable through both hooks


def test_native_parallelism_attribute():
    """diffusers' `enable_parallelism` records its config as `ModelMixin._parallel_config` (None by default)."""
    from diffusers import ModelMixin

    assert ModelMixin._parallel_config is None
    model = torch.nn.Linear(2, 2)
    assert compat.native_parallelism(model) is None
    model._parallel_config = "config"
    assert compat.native_parallelism(model) == "config"


class _Cached(torch.nn.Linear, CacheMixin):
    pass


def test_cache_context_reaches_the_cfg_hook_by_public_state_manager():
    """diffusers hands `cache_context`'s context to every `StateManager` attribute of a stateful hook; the CFG hook
    reads only its public `.context.name`."""
    model = _Cached(2, 2)
    hook = CFGHook(Group(None, 0, 2), {}, check_inputs=False, warn=False)
    HookRegistry.check_if_exists_or_initialize(model).register_hook(hook, "usp_cfg")
    assert hook.context_name() is None
    with model.cache_context("uncond"):
        assert hook.context_name() == "uncond"
    assert hook.context_name() is None


def test_native_cp_plan_and_default_processor_class():
    """`ModelMixin._cp_plan` (Wan's is reused as it is) and `Attention._default_processor_cls`."""
    from diffusers import WanTransformer3DModel
    from diffusers.models.transformers.transformer_wan import WanAttnProcessor

    from diffusers_usp.tiny import tiny_wan_transformer

    plan = compat.native_plan(WanTransformer3DModel)
    assert any(isinstance(spec, compat.ContextParallelOutput) for spec in plan.values())
    attn = tiny_wan_transformer().blocks[0].attn1
    assert compat.default_processor_class(attn) is WanAttnProcessor


def test_set_attention_backend_reaches_the_wrapped_processor():
    """diffusers' `set_attention_backend` writes `processor._attention_backend`; a USPProcessor forwards it."""
    from diffusers_usp import USPProcessor
    from diffusers_usp.tiny import tiny_wan_transformer

    model = tiny_wan_transformer()
    inner = model.blocks[0].attn1.processor
    model.blocks[0].attn1.set_processor(USPProcessor(inner))
    model.set_attention_backend("native")
    assert inner._attention_backend is not None and model.blocks[0].attn1.processor._attention_backend is not None


def test_fsdp2_private_names_exist():
    """`forget_fully_shard` (undoing `fully_shard`) reads FSDP2's composable-state keys and its state's hook handles;
    `fsdp_original_class` reads `FSDP<Orig>`'s MRO. Their shard, undo and re-shard runs are in test_weights.py."""
    from torch.distributed._composable.contract import REGISTRY_KEY, STATE_KEY  # noqa: F401
    from torch.distributed._composable_state import _module_state_mapping  # noqa: F401
    from torch.distributed.fsdp import FSDPModule

    assert hasattr(FSDPModule, "_get_fsdp_state")


def test_cache_block_registry():
    """`TransformerBlockRegistry` (diffusers' cache hooks find blocks by exact class): `register_cache_block_class`
    registers FSDP2's renamed block classes under the original's metadata."""
    from diffusers.hooks._helpers import TransformerBlockRegistry
    from diffusers.models.transformers.transformer_flux import FluxTransformerBlock

    metadata = TransformerBlockRegistry.get(FluxTransformerBlock)
    assert hasattr(metadata, "return_hidden_states_index")
    assert callable(TransformerBlockRegistry.register)


def test_vae_split_wrap_points_exist():
    """The VAE split wraps `_decode`/`_encode` of diffusers' autoencoders and `_conv_forward(x, weight, bias)` of
    torch's convs, per instance."""
    import inspect

    from diffusers import AutoencoderKL, AutoencoderKLWan

    for cls in (AutoencoderKL, AutoencoderKLWan):
        assert callable(cls._decode) and callable(cls._encode)
    for conv in (torch.nn.Conv2d, torch.nn.Conv3d):
        assert list(inspect.signature(conv._conv_forward).parameters) == ["self", "input", "weight", "bias"]


def test_dispatch_mode_runs_a_module_on_meta():
    """`compat.TorchDispatchMode` (private `torch.utils._python_dispatch`): the base of `vae_tiles.MetaShapes`, which
    learns the output shape of a tile another rank computes. Catches a base that no longer sees every aten op (the
    conv would run on its real weights: a real output, FLOPs spent) or a meta kernel gone."""
    from diffusers_usp.vae_tiles import MetaShapes

    conv = torch.nn.Conv2d(3, 5, 3, stride=2, padding=1)
    with MetaShapes():
        out = torch.nn.functional.group_norm(conv(torch.randn(1, 3, 9, 7)), 5) * torch.arange(4, device="cpu")[:1]
    assert out.is_meta and out.shape == (1, 5, 5, 4)


def test_assert_async_raises_on_a_false_tensor():
    """`compat.assert_async` (`torch._assert_async`): the traced separability check of per-query masks."""
    import pytest
    import torch

    from diffusers_usp.compat import assert_async

    assert_async(torch.tensor(True), "fine")
    with pytest.raises(RuntimeError, match="the message"):
        assert_async(torch.tensor(False), "the message")
