"""Modes of the classes proven through the plan language's newer specs that `parallelize` refuses on every rank
(their exact modes run in `tests/test_modes.py`, from `tests/tasks/plan_modes.py`)."""

from tasks.plan_refusals import flash_window_on_a_ring


def test_ace_step_flash_window_on_a_ring_is_refused_on_every_rank(pools):
    """Catches ACE-Step under a flash backend on a ring: its forward then builds no band mask and passes the sliding
    window to the kernel as `attention_kwargs`, which the ring's own log-sum-exp kernels do not take, so every layer
    would silently attend the whole sequence."""
    for rank, ended in enumerate(pools(2).run(flash_window_on_a_ring, 2)):
        assert "NotImplementedError" in ended and "window_size" in ended and "ring_degree=1" in ended, (rank, ended)
