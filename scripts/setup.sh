#!/usr/bin/env bash
# Create .venv and install robo_reward with what the main job and the tests need.
# Safe to run again: it only installs what is missing. No GPU needed.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install --quiet --upgrade pip

# Debian packages: installed with apt-get as root, or through sudo when it works without
# a password; otherwise a warning says what to install (the tests that need it skip).
APT_UPDATED=0
apt_install() {
    local sudo=""
    if ! command -v apt-get >/dev/null 2>&1; then
        return 1
    elif [ "$(id -u)" != "0" ]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; else return 1; fi
    fi
    if [ "$APT_UPDATED" = "0" ]; then
        $sudo apt-get update -qq || return 1
        APT_UPDATED=1
    fi
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Headless rendering: MuJoCo uses EGL (Mesa). Install it from Debian if it is missing.
if ! ldconfig -p 2>/dev/null | grep -q 'libEGL.so.1'; then
    apt_install libegl1 libegl-mesa0 libgl1-mesa-dri ||
        echo "warning: libEGL.so.1 not found; install Mesa's EGL (Debian: libegl1 libegl-mesa0) for rendering" >&2
fi

# Headless Chromium: tests/test_report_browser.py opens the benchmark report in it
# (Debian's package, driven by the playwright Python package; no browser download).
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
    apt_install chromium ||
        echo "warning: chromium not found; install it (Debian: apt-get install chromium) for the report's browser test" >&2
fi

# Torch first, pinned, so that no dependency pulls another build.
if ! python -c "import torch, torchvision" >/dev/null 2>&1; then
    python -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
fi
python -m pip install --quiet -e ".[mujoco,sb3,video,metaworld,vlm,pybullet,deploy,bench,llm,offline,ray,test]"
echo "robo_reward installed in $(pwd)/.venv"
