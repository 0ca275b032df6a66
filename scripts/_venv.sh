# shellcheck shell=bash
# Sourced by the scripts: make .venv exist and hold the project with the given extras.
# Re-installs only when pyproject.toml changed, so repeated runs start fast.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
VENV="$ROOT/.venv"
ensure_venv() {
    local extras="$1"
    if [ ! -x "$VENV/bin/python" ]; then
        # Debian's python3 may lack ensurepip; virtualenv from PyPI is the fallback.
        "$PYTHON" -m venv "$VENV" 2>/dev/null || {
            rm -rf "$VENV"
            "$PYTHON" -m pip install --quiet --user virtualenv
            "$PYTHON" -m virtualenv --quiet "$VENV"
        }
        "$VENV/bin/python" -m pip install --quiet --upgrade pip
    fi
    local stamp="$VENV/.installed-${extras:-base}"
    local want
    want="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        local target="$ROOT"
        [ -n "$extras" ] && target="${ROOT}[$extras]"
        "$VENV/bin/python" -m pip install --quiet -e "$target"
        echo "$want" > "$stamp"
    fi
}
