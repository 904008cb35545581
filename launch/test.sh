#!/usr/bin/env bash
# The test suite on CPU with 8 fake devices (the README's test command runs this).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${VIRTUAL_ENV:-}" ]; then
  [ -d .venv ] || python3 -m venv .venv
  . .venv/bin/activate
  python -m pip install -q --upgrade pip
  python -m pip install -q -e ".[test]"
fi
export XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=8"
export JAX_PLATFORMS=cpu
python -m pytest tests -q "$@"
