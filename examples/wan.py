"""Wan text-to-video with Ulysses sequence parallelism.

    accelerate launch --multi_gpu --num_processes 2 examples/wan.py --check     # tiny offline pipeline
    accelerate launch --multi_gpu --num_processes 4 examples/wan.py --model Wan-AI/Wan2.1-T2V-1.3B-Diffusers
    python examples/wan.py                                                      # one process

`diffusers_usp` must be importable (`PYTHONPATH=.` from the repository root). See `_driver.py` for the arguments.
"""

from _driver import main

if __name__ == "__main__":
    main("wan")
