"""`apply_cuda_graphs` bookkeeping that needs no GPU: which static buffer each new input is copied into."""

import torch

from diffusers_usp.graphs import _copy_inputs, _signature, _tensors


def test_inputs_follow_their_names_whatever_the_keyword_order():
    """Catches static buffers matched to a call's tensors by position: the cache key sorts keywords, so a second call
    with the same keywords in another order reuses the graph and, matched by position, would copy the timestep into
    the latents' buffer and the reverse (a silently wrong step wherever the shapes agree)."""
    latents, timestep, text = torch.randn(2, 3), torch.randn(2, 3), torch.randn(4)
    first = dict(hidden_states=latents, timestep=timestep, encoder_hidden_states=text)
    again = dict(encoder_hidden_states=text * 2, timestep=timestep * 3, hidden_states=latents * 5)
    assert _signature((), first) == _signature((), again)  # one graph serves both calls

    static = {key: torch.zeros_like(x) for key, x in _tensors((), first).items()}
    _copy_inputs(static, (), again)
    assert torch.equal(static["hidden_states"], latents * 5)
    assert torch.equal(static["timestep"], timestep * 3)
    assert torch.equal(static["encoder_hidden_states"], text * 2)


def test_positional_tensors_are_keyed_by_position():
    a, b = torch.randn(3), torch.randn(3)
    static = {key: torch.zeros(3) for key in _tensors((a, 1.0, b), {})}
    assert set(static) == {0, 2}
    _copy_inputs(static, (b, 1.0, a), {})
    assert torch.equal(static[0], b) and torch.equal(static[2], a)
