#!/usr/bin/env bash
# Every check that needs a CUDA device, in one run: the CUDA tests, then benchmarks/gpu.py (the
# real-time-factor table for the learned stack and HiFi-GAN V1, and 1000 files of 5 s against a
# loop of the module). Each part's log goes into OUTDIR as it runs, so a run stopped midway keeps
# what it printed; it exits 1 if any part failed.
#
#     bash benchmarks/cuda_checks.sh [OUTDIR] [gpu.py options...]    # OUTDIR: cuda-checks/
#
# Needs the package installed (`pip install .`: gpu.py times the `convt-audio` command), torch
# with CUDA, and the test extra's pytest and hypothesis. Only the test modules that hold CUDA
# tests are collected, so the peers the other modules import (librosa, soxr, ray) need not be
# there. CUDA_CHECKS_QUICK=1 runs gpu.py with --quick (2 s, 12 files); CUDA_CHECKS_DEVICE=cpu
# checks the script itself on a machine without CUDA (the tests skip, gpu.py runs on the CPU).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-cuda-checks}
shift || true
mkdir -p "$out"
python=${PYTHON:-python3}
device=${CUDA_CHECKS_DEVICE:-cuda}
export PYTHONUNBUFFERED=1 CUDA_CHECKS_DEVICE=$device
status=0

"$python" - <<'EOF' 2>&1 | tee "$out/device.txt"
import os
import platform

import torch
import convt_audio

print(f"python {platform.python_version()}, torch {torch.__version__}, convt-audio from {convt_audio.__file__}")
if not torch.cuda.is_available():
    if os.environ["CUDA_CHECKS_DEVICE"] == "cpu":
        raise SystemExit(0)
    raise SystemExit("no CUDA device: nothing here can run (CUDA_CHECKS_DEVICE=cpu checks the script)")
props = torch.cuda.get_device_properties(0)
free, total = torch.cuda.mem_get_info(0)
print(f"{props.name}: {props.multi_processor_count} SMs, {total / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free")
EOF
[ "${PIPESTATUS[0]}" -eq 0 ] || exit 1

modules=(tests/test_engines.py tests/test_vocoders.py tests/test_pool.py tests/test_graphs.py)
"$python" -m pytest -q -p no:cacheprovider -k cuda "${modules[@]}" 2>&1 | tee "$out/tests.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

quick=()
[ "${CUDA_CHECKS_QUICK:-0}" = 1 ] && quick=(--quick)
"$python" benchmarks/gpu.py --device "$device" "${quick[@]}" "$@" 2>&1 | tee "$out/gpu.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
exit "$status"
