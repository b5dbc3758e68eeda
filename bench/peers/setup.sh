#!/usr/bin/env bash
# Idempotent: create/refresh the peers benchmark venv at bench/.venv-peers.
# Reinstalls only when requirements.txt changed (sha256 stored in the venv).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$(cd "$here/.." && pwd)/.venv-peers"
req="$here/requirements.txt"
stamp="$venv/.requirements.sha256"
py="${PYTHON:-python3}"

want="$(sha256sum "$req" | cut -d' ' -f1)"
have="$(cat "$stamp" 2>/dev/null || true)"

if [[ ! -x "$venv/bin/python" ]]; then
    echo "creating venv $venv" >&2
    "$py" -m venv "$venv"
    have=""
fi

# Keep the venv out of git status and out of `ruff check .` (both honour
# nested .gitignore files; the repo's own .gitignore only covers .venv/).
printf '*\n' > "$venv/.gitignore"

if [[ "$want" != "$have" ]]; then
    echo "installing $req" >&2
    "$venv/bin/python" -m pip install --quiet --upgrade pip >&2
    "$venv/bin/python" -m pip install --quiet -r "$req" >&2
    echo "$want" > "$stamp"
else
    echo "requirements unchanged; venv up to date" >&2
fi

echo "$venv/bin/python"
