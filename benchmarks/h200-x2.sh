#!/usr/bin/env bash
# Every record of results/h200-x2.json, in the order they were measured, on one 2-GPU machine (one lease): stock at
# world 1 on GPU 0, usp and diffusers' native Ulysses at world 2. About 17 minutes on 2 H200s; then the table and plot.
# Ring attention is measured by benchmarks/h200-x2-ring.sh into results/h200-x2-ring.json, with the stock and Ulysses
# records it is compared with measured again in its own lease.
# NVLink multicast stays off (the machine's owners require it; NCCL does not need it here).
set -euo pipefail
cd "$(dirname "$0")/.."
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
R=benchmarks/results/h200-x2.json
run1() { python benchmarks/run.py --packing off --machine "2x NVIDIA H200 (NV18)" --out "$R" "$@"; }
run2() { torchrun --nproc_per_node 2 benchmarks/run.py --packing off --machine "2x NVIDIA H200 (NV18)" --out "$R" "$@"; }
ALL="eager graph compiled compiled_graph"
WAN="--warmup 1 --repeat 3"
run1 --models flux-dev-1024 --impls stock --modes $ALL
run2 --models flux-dev-1024 --impls usp diffusers --modes $ALL
run2 --models flux-dev-2048 --impls usp diffusers --modes graph
run1 --models flux-dev-2048 --impls stock --modes graph
run1 --models wan2.1-14b-480p --impls stock --modes eager graph $WAN
run2 --models wan2.1-14b-480p --impls usp diffusers --modes eager graph $WAN
run1 --models wan2.1-14b-720p --impls stock --modes eager $WAN
run2 --models wan2.1-14b-720p --impls usp --modes eager $WAN
run2 --models wan2.1-14b-480p --impls usp diffusers --modes compiled $WAN
run1 --models wan2.1-14b-480p --impls stock --modes compiled $WAN
run2 --models flux-dev-2048 --impls usp diffusers --modes compiled_graph --warmup 2 --repeat 5
run1 --models flux-dev-2048 --impls stock --modes compiled_graph --warmup 2 --repeat 5
python benchmarks/report.py "$R"
