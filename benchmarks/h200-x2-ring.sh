#!/usr/bin/env bash
# results/h200-x2-ring.json (.md, .png), in one lease on one 2-GPU machine: ring 2 (usp-ring2, and diffusers' native
# ring, diffusers-ring2) against Ulysses 2 (usp) and stock, all measured here so that every ratio comes from this
# lease; and parity over NCCL for ring 2. About 7 minutes on 2 H200s.
#   bash benchmarks/h200-x2-ring.sh [flux|wan|parity]   (all three by default)
set -euo pipefail
cd "$(dirname "$0")/.."
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
R=benchmarks/results/h200-x2-ring.json
run1() { python benchmarks/run.py --packing off --machine "2x NVIDIA H200 (NV18)" --out "$R" "$@"; }
run2() { torchrun --nproc_per_node 2 benchmarks/run.py --packing off --machine "2x NVIDIA H200 (NV18)" --out "$R" "$@"; }
WAN="--warmup 1 --repeat 3"
parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(flux wan parity)
for part in "${parts[@]}"; do
  case "$part" in
    flux)
      run1 --models flux-dev-1024 --impls stock --modes eager graph compiled compiled_graph
      run2 --models flux-dev-1024 --impls usp usp-ring2 diffusers-ring2 --modes eager graph compiled compiled_graph ;;
    wan)
      run1 --models wan2.1-14b-480p --impls stock --modes eager compiled $WAN
      run2 --models wan2.1-14b-480p --impls usp usp-ring2 diffusers-ring2 --modes eager compiled $WAN ;;
    parity)
      torchrun --nproc_per_node 2 benchmarks/parity.py --impl usp-ring2 ;;
    *) echo "unknown part: $part" >&2; exit 2 ;;
  esac
done
python benchmarks/report.py "$R"
