#!/usr/bin/env bash
# Set up (if needed), then the main job: train PPO on the shipped Reacher card with a
# hand-written reward (not the env's own) and report ground-truth return and success.
# CPU only, offline; a few minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export MUJOCO_GL=${MUJOCO_GL:-egl} PYOPENGL_PLATFORM=${PYOPENGL_PLATFORM:-egl} HF_HUB_OFFLINE=1
robo-reward train --config assets/runs/quickstart.yaml "$@"
