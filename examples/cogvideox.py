"""CogVideoX text-to-video with Ulysses sequence parallelism.

    accelerate launch --multi_gpu --num_processes 2 examples/cogvideox.py --check    # tiny offline pipeline
    accelerate launch --multi_gpu --num_processes 2 examples/cogvideox.py --model THUDM/CogVideoX-5b
    python examples/cogvideox.py                                                     # one process

`diffusers_usp` must be importable (`PYTHONPATH=.` from the repository root). See `_driver.py` for the arguments.
"""

from _driver import main

if __name__ == "__main__":
    main("cogvideox")
