#!/usr/bin/env bash
# Set up .venv from this repository's own files, then run the app or the tests.
#   bash tools/setup.sh app [fer-app options]   set up, then launch the app with the shipped model
#   bash tools/setup.sh test [pytest options]   set up with the test extras, then run the whole suite
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
target=${1:-app}
shift || true

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "setup: Python 3.11 or newer is needed (found $("$python" --version 2>&1))" >&2
    exit 1
fi

# System libraries Qt's xcb platform needs for a real window, and Xvfb for the real-window test.
need=()
if [ "$(uname -s)" = Linux ] && command -v dpkg-query >/dev/null; then
    packages=(libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxcb-xkb1 libxkbcommon-x11-0 libxcb-cursor0 libegl1 libgl1 libfontconfig1 libdbus-1-3)
    [ "$target" = test ] && packages+=(xvfb)
    for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || need+=("$p")
    done
fi
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "setup: installing system packages: ${need[*]}"
        apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    else
        echo "setup: missing system packages (install them with your package manager): ${need[*]}" >&2
    fi
fi

extras=""
[ "$target" = test ] && extras="[dev]"
[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=".venv/.fer-installed$extras"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "setup: installing the project$extras into .venv (the first time takes a few minutes)"
    # (grep drops pip's notes about package locations this machine's pip configuration names but lacks)
    .venv/bin/python -m pip install --quiet --upgrade pip 2>&1 | { grep -v "^WARNING: Location" || true; }
    .venv/bin/python -m pip install --quiet -e ".$extras" 2>&1 | { grep -v "^WARNING: Location" || true; }
    touch "$stamp"
fi

case "$target" in
    app) exec .venv/bin/fer-app "$@" ;;
    test) exec .venv/bin/python -m pytest "$@" ;;
    *) echo "setup: unknown target $target (use app or test)" >&2; exit 2 ;;
esac
