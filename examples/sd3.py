"""Stable Diffusion 3.5 text-to-image with Ulysses sequence parallelism.

    accelerate launch --multi_gpu --num_processes 2 examples/sd3.py --check    # tiny offline pipeline
    accelerate launch --multi_gpu --num_processes 4 examples/sd3.py --model stabilityai/stable-diffusion-3.5-large
    python examples/sd3.py                                                     # one process

`diffusers_usp` must be importable (`PYTHONPATH=.` from the repository root). See `_driver.py` for the arguments.
"""

from _driver import main

if __name__ == "__main__":
    main("sd3")
