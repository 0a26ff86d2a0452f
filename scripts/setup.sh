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

# Headless rendering: MuJoCo uses EGL (Mesa). Install it from Debian if it is missing.
if ! ldconfig -p 2>/dev/null | grep -q 'libEGL.so.1'; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
        apt-get update -qq && apt-get install -y -qq libegl1 libegl-mesa0 libgl1-mesa-dri >/dev/null
    else
        echo "warning: libEGL.so.1 not found; install Mesa's EGL (Debian: libegl1 libegl-mesa0) for rendering" >&2
    fi
fi

# Torch first, pinned, so that no dependency pulls another build.
if ! python -c "import torch, torchvision" >/dev/null 2>&1; then
    python -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
fi
python -m pip install --quiet -e ".[mujoco,sb3,video,metaworld,vlm,deploy,bench,llm,offline,ray,test]"
echo "robo_reward installed in $(pwd)/.venv"
