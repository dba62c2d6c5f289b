# Sourced by scripts/quickstart and scripts/test: create or reuse .venv, install the
# project with the extras in $EXTRAS on first use, and again whenever pyproject.toml
# or the extras change.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
py="${PYTHON:-}"
if [ -z "$py" ]; then
  for candidate in python3.11 python3.12 python3.13 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      py="$candidate"; break
    fi
  done
fi
if [ -z "$py" ]; then
  echo "toymodels needs Python >= 3.11 on PATH (or set PYTHON=/path/to/python3.11)" >&2
  exit 2
fi
extras="${EXTRAS:-test}"
stamp="$venv/.installed-$( (cat "$root/pyproject.toml"; echo "$extras") | cksum | cut -d' ' -f1)"
if [ ! -f "$stamp" ]; then
  echo "setting up $venv (first use: installs jax, flax, optax, ...)" >&2
  [ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -e "$root[$extras]"
  rm -f "$venv"/.installed-*
  touch "$stamp"
fi
export PATH="$venv/bin:$PATH"
cd "$root"
