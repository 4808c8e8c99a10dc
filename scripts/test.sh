#!/usr/bin/env bash
# The project's test command: set up .venv, then lint, type-check and run the whole test suite.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/setup-env.sh
BIN="$(dirname "$PY")"
echo "== ruff"
"$BIN/ruff" check xnat_prefect flows blocks tests bench deployments
"$BIN/ruff" format --check xnat_prefect flows blocks tests bench deployments
echo "== mypy"
"$BIN/mypy" xnat_prefect flows blocks
echo "== pytest"
export PREFECT_HOME="${PREFECT_HOME:-$(mktemp -d)}"
# Tests are mostly I/O-bound (real servers, asynchronous archiving): 4 workers on 2 cores.
"$BIN/pytest" -n "${PYTEST_WORKERS:-4}" "$@"
