#!/usr/bin/env bash
# Every GPU measurement issue 16 asks for, in one go, sized to a short GPU lease (at most 10
# minutes on one H200 when every step runs to its limit; each step has its own timeout so that a slow one
# cannot starve the rest). Results go to $OUT (default ./gpu_out), one log per step, and a
# summary of the exit status of each step at the end.
#
#   bash benchmarks/gpu_session.sh                  # every step, in order of importance
#   bash benchmarks/gpu_session.sh stages_bf16 sweep   # only these steps
#
# Steps: check (benchmarks/check_cuda.py: correctness on the GPU, CUDA tests), stages_bf16 and
# stages_fp32 (issue 16's table, ViT-B/16, 16 images, N = 50, with peak memory), compile (the
# compiled path against eager, bf16), fidelity (bf16 against float32 maps with this code),
# sweep (max_batch_size on the GPU), memory (peak memory of both aggregations as N grows).
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT="${OUT:-$PWD/gpu_out}"
mkdir -p "$OUT"
VIT_B=(--device cuda --models vit_base_patch16_224 --batch-sizes 16 --num-samples 50)

step() {  # name, timeout in seconds, command...
    local name=$1 limit=$2
    shift 2
    echo "=== $name (at most ${limit} s): $*" | tee "$OUT/$name.txt"
    local start=$SECONDS
    timeout "$limit" "$@" >>"$OUT/$name.txt" 2>&1
    local status=$?
    tail -n 40 "$OUT/$name.txt"
    echo "$name: exit $status after $((SECONDS - start)) s" | tee -a "$OUT/summary.txt"
}

photographs=()
if python -c "import skimage" 2>/dev/null; then
    photographs=(--timm vit_base_patch16_224)
fi

run() {
    case $1 in
        check) step check 200 python benchmarks/check_cuda.py ;;
        stages_bf16) step stages_bf16 70 python benchmarks/bench_dave.py --stages --dtype bf16 "${VIT_B[@]}" ;;
        stages_fp32) step stages_fp32 70 python benchmarks/bench_dave.py --stages --dtype fp32 "${VIT_B[@]}" ;;
        compile) step compile 60 python benchmarks/bench_dave.py --compile --dtype bf16 "${VIT_B[@]}" --repeats 3 ;;
        fidelity) step fidelity 100 python benchmarks/bf16_fidelity.py --device cuda --models normal \
            "${photographs[@]}" ;;
        sweep) step sweep 40 python benchmarks/bench_dave.py --sweep --dtype bf16 "${VIT_B[@]}" \
            --sweep-sizes 64 128 256 auto ;;
        memory) step memory 60 python benchmarks/bench_dave.py --device cuda --dtype bf16 \
            --models vit_base_patch16_224 --batch-sizes 8 --skip-naive ;;
        *) echo "unknown step: $1" >&2; return 2 ;;
    esac
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT/gpu.txt"
for name in "${@:-check stages_bf16 stages_fp32 compile fidelity sweep memory}"; do
    for each in $name; do run "$each"; done
done
cat "$OUT/summary.txt"
