#!/usr/bin/env bash
# The accelerator measurements of docs/performance.md in one call (issue 28, item 4): render
# img/s at 224 and 512 px (JAX against the numba port, same run), and the ViT-Ti/16 step at
# 224 px, plain Flax against fractaljax's model path and its full step (1p-frac drawn in the
# step on the 512 px canvas plus the paper's augmentation), in bfloat16 and float32, and every
# source's batch() at paper size (issue 30, item 3; the official CPU loops beside). The
# in-step rendering and augmentation share is 1 - (full img/s) / (model img/s); the target
# is <= 5%. Each section writes its own file under $OUT (default out/gpu_speed).
#
# On a lent device machine (about 7 minutes on one H100 or H200, estimated; no network there), with the
# wheels that configs/sweep_delta_gpu.py's docstring prepares, carried as '.whl':
#
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl &&
#   export PYTHONPATH=/tmp/site && bash benchmarks/gpu_speed.sh
#
# GPU_SPEED_QUICK=1 shrinks every size, to check the script itself on a CPU in a minute.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-out/gpu_speed}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
py=${PYTHON:-python3}

if [ "${GPU_SPEED_QUICK:-0}" = 1 ]; then
  render=(--batch 4 --points 2000 --walkers 100 --numpy_images 1 --repeats 1)
  step=(--variant test/4 --size 32 --batch 4 --steps 1 --rounds 1 --classes 10)
  source=(--size mini --batch 4 --repeats 1 --num_classes 8 --reference_images 1)
else
  render=(--batch 256 --numpy_images 1 --repeats 5)
  step=(--variant Ti/16 --size 224 --batch 256 --steps 5 --rounds 4 --classes 1000)
  source=(--size paper --batch 256 --repeats 3 --num_classes 64 --reference_images 4)
fi

status=0
run() {  # name, command...: one section, its output kept even when it fails
  local name=$1
  shift
  echo "== $name: $*" | tee "$out/$name.txt"
  "$@" 2>&1 | tee -a "$out/$name.txt" || status=1
}

run device "$py" -c "import jax; print(jax.__version__, jax.devices())"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version \
  --format=csv >>"$out/device.txt" 2>&1
run render_224 "$py" benchmarks/render_bench.py --size 224 "${render[@]}"
run render_512 "$py" benchmarks/render_bench.py --size 512 "${render[@]}"
# full_before: on an accelerator 'auto' is vmap and scatter already; it differs by the crop.
run step_bf16 "$py" benchmarks/step_bench.py "${step[@]}" --dtype bfloat16 --skip timm,full_before
run step_f32 "$py" benchmarks/step_bench.py "${step[@]}" --dtype float32 --skip timm,full_before
run sources "$py" benchmarks/source_bench.py "${source[@]}"
exit $status
