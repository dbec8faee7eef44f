#!/usr/bin/env bash
# Every GPU check in one run, one JSON (benchmarks/gpu.py says what each part measures).
#
#   bash benchmarks/gpu.sh --out gpu.json    # one H100/H200: under 8 minutes
#   bash benchmarks/gpu.sh --dry-run         # the CPU at tiny sizes: CI runs this
#
# With RAINBENCH_NLCL_REFERENCE=/path/to/unpacked/NLCL the public trainer is timed too.
# PYTHON picks the interpreter (default: python, e.g. the activated venv's).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "${PYTHON:-python}" "$here/gpu.py" "$@"
