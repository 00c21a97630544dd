"""The ranks' transformer inputs are compared on every forward, not only the first (issue #19): a later difference
raises on every rank, naming the input, at most one forward late, with no hang and no collective of its own."""

import pytest
import torch
from tasks import inputs as ic

from diffusers_usp.inputs import named_tensors


@pytest.mark.parametrize("world", [2, 3])
def test_latents_changed_on_one_rank_after_step_0_raise_on_every_rank(pools, world):
    """Catches a check made on the first forward only: a `callback_on_step_end` that changes rank 0's latents after
    step 0 gave every rank an image up to 0.43 away from any one-process result, without a word."""
    for message in pools(world).run(ic.latents_changed_after_step, 0):
        assert "different transformer inputs in the previous forward (`hidden_states` differ)" in message, message


def test_check_inputs_false_turns_it_off(pools):
    for message in pools(2).run(ic.latents_changed_after_step, 0, False):
        assert message == "no error"


@pytest.mark.parametrize("model, world", [("flux", 2), ("wan", 3)])
def test_another_prompt_on_one_rank_in_a_later_call(pools, model, world):
    """The second call's prompt embedding differs on the last rank: every rank raises at the third call (one forward
    late), naming `encoder_hidden_states`, and no rank waits in a collective."""
    for outcomes in pools(world).run(ic.prompt_differs_in_second_call, model):
        assert outcomes[:2] == ["ok", "ok"] and "`encoder_hidden_states` differ" in outcomes[2], outcomes


def test_inputs_are_named_inside_lists():
    x = torch.zeros(1)
    names = [n for n, _ in named_tensors(["hidden_states", "block_samples"], (x, [x, None, x]), {"t": x})]
    assert names == ["hidden_states", "block_samples[0]", "block_samples[2]", "t"]
