"""Qwen-Image text-to-image with Ulysses sequence parallelism.

    accelerate launch --multi_gpu --num_processes 2 examples/qwenimage.py --check    # tiny offline pipeline
    accelerate launch --multi_gpu --num_processes 4 examples/qwenimage.py --model Qwen/Qwen-Image
    python examples/qwenimage.py                                                     # one process

`diffusers_usp` must be importable (`PYTHONPATH=.` from the repository root). See `_driver.py` for the arguments.
"""

from _driver import main

if __name__ == "__main__":
    main("qwenimage")
