"""Tasks that the ranks of a test pool run, one module per subject, and the script run under `accelerate launch`.

A task is a module-level function, so that spawned ranks unpickle it by name (`tasks.core.run_model`). Each builds its
model and inputs from seeds, so every rank and the single-process reference in the test hold the same weights and
inputs without communicating, and returns numbers or tensors for the test to compare.

- `core`: models under `parallelize` or the heads-only processor, the communication layer and attention core, the
  coverage zoo, compile, failures, memory;
- `cfg`: CFG parallel; `ring`: ring attention; `dense`: masks over the whole sequence; `routing`: which kernel
  calls reach the core, and their refusals; `caches`: step caches in step; `inputs`: the per-forward input check;
  `works_with`: what users stack on a pipeline (docs/works_with.md); `weights`: sharded weights; `vae`: the VAE split;
- `launched`: run as a script under `accelerate launch`: every tiny pipeline, then every example.
"""
