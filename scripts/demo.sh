#!/usr/bin/env bash
# The main job on the embedded default: set up .venv, then run the end-to-end demo
# (XNAT emulator + local Prefect; nothing else to start).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/setup-env.sh
exec "$(dirname "$PY")/xnat-prefect" demo "$@"
