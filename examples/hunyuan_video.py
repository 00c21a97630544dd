"""HunyuanVideo text-to-video with Ulysses sequence parallelism.

    accelerate launch --multi_gpu --num_processes 2 examples/hunyuan_video.py --check    # tiny offline pipeline
    accelerate launch --num_processes 8 examples/hunyuan_video.py --model hunyuanvideo-community/HunyuanVideo
    python examples/hunyuan_video.py                                                     # one process

`diffusers_usp` must be importable (`PYTHONPATH=.` from the repository root). See `_driver.py` for the arguments.
"""

from _driver import main

if __name__ == "__main__":
    main("hunyuan_video")
