#!/usr/bin/env bash
# CI: the verl bridge tests against the REAL verl, in a venv of its own (verl 0.9 caps
# transformers below what vLLM needs, so it never shares the main venv). The venv is kept
# between runs (ARLARENA_VERL_VENV, default .venv-verl) and pip's wheel cache is used, so only
# the first run pays the ~5 min / 1.9 GB install.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
VENV=${ARLARENA_VERL_VENV:-.venv-verl}
start=$(date +%s)
log() { echo "[ci-verl +$(( $(date +%s) - start ))s] $*"; }

if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
fi
# resolving verl's dependency tree takes minutes even when nothing changes: redo it only when
# pyproject.toml changed since the venv was built (else just refresh the editable install)
stamp="$VENV/.arlarena-pyproject.sha256"
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "verl extra (verl 0.9.x, torch 2.13.0) + this package"
  "$VENV/bin/pip" install -q -e ".[verl]" "pytest>=8" "pytest-timeout>=2.3"
  echo "$want" > "$stamp"
else
  log "venv up to date with pyproject.toml; refreshing the editable install"
  "$VENV/bin/pip" install -q --no-deps -e .
fi
"$VENV/bin/python" -c "import verl, torch, transformers; print('verl', verl.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__)"
log "verl bridge tests"
"$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/test_verl_bridge.py
log "done"
