#!/usr/bin/env bash
# The GPU half of `python -m effc.bench.perf.cuda`, as one command for the machine that has the GPU (torch and CUDA,
# no IREE compiler, no effc install). Run from the checkout's root, with IREE's runtime wheel for that machine's
# Python in .whl/ (here: pip download --no-deps --only-binary=:all: --python-version 3.12 --platform
# manylinux_2_28_x86_64 -d .whl iree-base-runtime==3.13.0) and a pack compiled here by `cuda prepare`:
#
#   bash bench/perf/on_gpu.sh PACK TAG [PROFILE_KEYS]
#
# It measures every module of PACK (IREE against torch eager, numerics against torch on the GPU) and, given
# PROFILE_KEYS (`--only` of `cuda profile`), times those modules' kernels with Nsight Compute. Results go to $OUT
# where it is set (the device tool's folder that comes back), else to bench/perf/results.
set -euo pipefail
pack=${1:?usage: bash bench/perf/on_gpu.sh PACK TAG [PROFILE_KEYS]}
tag=${2:?usage: bash bench/perf/on_gpu.sh PACK TAG [PROFILE_KEYS]}
profile_keys=${3:-}
wheels=(.whl/iree_base_runtime-*.whl)
[[ -e ${wheels[0]} ]] || { echo "on_gpu.sh: no IREE runtime wheel in .whl/; download it first (see the header)" >&2; exit 2; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/effc-site "${wheels[@]}"
mkdir -p /tmp/effc-pkg && ln -sfn "$PWD" /tmp/effc-pkg/effc  # the checkout is the `effc` package
export PYTHONPATH=/tmp/effc-site:/tmp/effc-pkg PYTHONUNBUFFERED=1
out=${OUT:-bench/perf/results}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -m effc.bench.perf.cuda measure --pack "$pack" --out "$out" --tag "$tag" --repetitions 7
if [[ -n $profile_keys ]]; then
  python3 -m effc.bench.perf.cuda profile --pack "$pack" --out "$out" --tag "$tag" --only "$profile_keys"
fi
