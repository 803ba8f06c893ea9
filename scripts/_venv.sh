# Sourced by scripts/example and scripts/test: make sure the venv ($AGI_VENV, default .venv) holds
# agi_core with the extras named in $AGI_EXTRAS (comma-separated; scripts/example: quickstart,
# scripts/test: test). Installs with uv (fetched from PyPI into the venv when not on PATH), showing
# its progress; does nothing when pyproject.toml is unchanged and those extras are already there.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${AGI_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
EXTRAS="${AGI_EXTRAS:-quickstart}"
stamp="$VENV/.agi-installed"   # line 1: "uv <sha256 of pyproject.toml>", line 2: the extras installed
want="uv $(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"

_agi_have_extras() {  # the extras the stamp records, when it is for this pyproject.toml
    [ "$(sed -n 1p "$stamp" 2>/dev/null)" = "$want" ] && sed -n 2p "$stamp"
}

_agi_needs_install() {
    local have extra
    have=",$(_agi_have_extras || echo '!'),"
    [ "$have" = ",!," ] && return 0
    for extra in ${EXTRAS//,/ }; do
        case "$have" in *",$extra,"*) ;; *) return 0 ;; esac
    done
    return 1
}

if [ ! -x "$VENV/bin/python" ]; then
    echo "creating $VENV ($PYTHON -m venv)" >&2
    "$PYTHON" -m venv "$VENV"
fi
if _agi_needs_install; then
    # keep what an earlier install of this venv had (scripts/test's tools survive scripts/example)
    previous="$(sed -n 2p "$stamp" 2>/dev/null || true)"
    extras="$(printf '%s\n' ${EXTRAS//,/ } ${previous//,/ } | awk 'NF && !seen[$0]++' | paste -sd, -)"
    uv="$VENV/bin/uv"
    if [ ! -x "$uv" ]; then
        if command -v uv >/dev/null; then
            uv="$(command -v uv)"
        else
            echo "installing uv into $VENV (pip, from PyPI)" >&2
            "$VENV/bin/python" -m pip install --disable-pip-version-check -q uv >&2
        fi
    fi
    echo "installing agi_core[$extras] into $VENV (uv)" >&2
    if ! "$uv" pip install --python "$VENV/bin/python" -e "$ROOT[$extras]" >&2; then
        echo "error: installing agi_core[$extras] into $VENV failed (uv's message is above)" >&2
        echo "fix: check the network or uv's cache (uv cache clean), or start over: rm -rf $VENV" >&2
        exit 1
    fi
    printf '%s\n%s\n' "$want" "$extras" > "$stamp"
fi
export PATH="$VENV/bin:$PATH"
cd "$ROOT"
