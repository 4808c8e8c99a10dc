#!/usr/bin/env bash
# Create (or reuse) the project's virtualenv in .venv and install the project with its test extras.
# Usage: source scripts/setup-env.sh   (sets PY to the venv's python)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${XNAT_PREFECT_VENV:-$ROOT/.venv}"
PYTHON_BIN="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON_BIN" -m venv "$VENV"
fi
PY="$VENV/bin/python"
"$PY" -m pip install --quiet --upgrade pip
# Strict editable mode: mypy and the flows/blocks package-dir mapping need it (see ARCHITECTURE.md).
# It links files at install time, so re-running this script after adding modules picks them up.
"$PY" -m pip install --quiet -e "$ROOT[test]" --config-settings editable_mode=strict
# pip silently downgrades prefect when another package asks for it: fail loudly instead.
"$PY" - <<'PYEOF'
import prefect, fastapi
from packaging.version import Version
v = Version(prefect.__version__)
assert Version("3.8.8") <= v < Version("4"), f"prefect {v} installed; need >=3.8.8,<4"
assert Version(fastapi.__version__) < Version("0.151"), f"fastapi {fastapi.__version__} breaks prefect 3.8"
print(f"environment ready: prefect {v}, fastapi {fastapi.__version__}")
PYEOF
export PY
