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

# pip's cache would keep a second copy of every wheel (about 3 GB for torch's CUDA build).
export PIP_NO_CACHE_DIR=1

# Torch first, pinned, so that no dependency pulls another build.
#   ROBO_REWARD_TORCH=cuda  torch 2.14.1 + torchvision 0.29.1 (a CUDA build that also runs
#                           on the CPU; about 5.5 GB installed). Everything is tested.
#   ROBO_REWARD_TORCH=cpu   the CPU-only torch 2.13.0+cpu wheel (about 1 GB), which must be
#                           on a pip find-links path; no torchvision that imports beside
#                           it, so the vlm extra (open_clip, torchvision) is left out and
#                           the CLIP and perceptual-backbone tests skip, saying so.
#   unset                   cuda, unless the disk has under MIN_FREE_GB for it and the
#                           CPU wheel can be found.
EXTRAS="mujoco,sb3,video,metaworld,vlm,pybullet,deploy,bench,llm,offline,ray,test"
MIN_FREE_GB=${ROBO_REWARD_MIN_FREE_GB:-9}
TORCH_MODE=${ROBO_REWARD_TORCH:-}
if python -c "import torch, torchvision" >/dev/null 2>&1; then
    TORCH_MODE=installed
elif python -c "import sys, torch; sys.exit(not torch.__version__.endswith('+cpu'))" >/dev/null 2>&1 &&
     [ "$TORCH_MODE" != "cuda" ]; then
    TORCH_MODE=cpu-installed
elif [ -z "$TORCH_MODE" ]; then
    free_gb=$(df -Pk . | awk 'NR==2 {print int($4 / 1048576)}')
    if [ "$free_gb" -lt "$MIN_FREE_GB" ] &&
       python -m pip install --dry-run --quiet --no-deps "torch==2.13.0+cpu" >/dev/null 2>&1; then
        echo "warning: ${free_gb} GiB free, under the ${MIN_FREE_GB} GiB torch's CUDA build needs;" \
             "installing the CPU-only torch without the vlm extra (set ROBO_REWARD_TORCH=cuda to insist)" >&2
        TORCH_MODE=cpu
    else
        TORCH_MODE=cuda
    fi
fi
case "$TORCH_MODE" in
    cuda)
        python -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1" ;;
    cpu)
        python -m pip install --quiet "torch==2.13.0+cpu" ;;
esac
if [ "$TORCH_MODE" = "cpu" ] || [ "$TORCH_MODE" = "cpu-installed" ]; then
    EXTRAS=${EXTRAS/vlm,/}
fi
python -m pip install --quiet -e ".[$EXTRAS]"
echo "robo_reward installed in $(pwd)/.venv (torch: $(python -c 'import torch; print(torch.__version__)'))"
