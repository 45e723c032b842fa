#!/usr/bin/env bash
# System libraries MuJoCo needs to render off-screen on a headless Debian/Ubuntu machine (simulator
# cameras and the videos `vla-edge report` writes). EGL (with Mesa's software rasteriser when there
# is no GPU) is what vla-edge uses by default (MUJOCO_GL=egl); OSMesa is the fallback
# (MUJOCO_GL=osmesa). Checked on Debian 12: libegl1 + libegl-mesa0 + libgl1-mesa-dri render with EGL.
# Usage: sudo scripts/install_render_deps.sh   (then: MUJOCO_GL=egl vla-edge run --robot ur3-sim)
set -euo pipefail
apt-get update
apt-get install -y --no-install-recommends libegl1 libegl-mesa0 libgl1-mesa-dri libgl1 libosmesa6
