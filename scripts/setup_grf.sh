#!/usr/bin/env bash
# Add Google Research Football (gfootball 2.10.2) to the project venv: an optional extra, idempotently.
#
#   bash scripts/setup_grf.sh     # or: make grf   (about 9 minutes the first time, a second on re-runs)
#
# Why a separate script: gfootball has no wheels. Its sdist compiles a C++ engine against SDL2, Boost.Python
# and OpenGL/EGL (DESIGN.md section 6), which `make test` must never need. As root it installs those
# development packages with apt; otherwise it names the missing ones and stops.
#
# The venv may be shared (worktrees link it), so nothing already installed may change version: every pip
# call runs under a constraints file frozen from the current venv, and gfootball itself goes in with
# --no-deps (its metadata asks for `pygame`, which would clash with the installed pygame-ce, and for
# `opencv-python`, whose GUI build is not needed; the headless build provides the `cv2` it imports).
# gfootball's build script runs the venv's python3 for psutil, hence --no-build-isolation.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${KDMARL_VENV:-$root/.venv}"
vpy="$venv/bin/python"
gf_spec="gfootball==2.10.2"
py_deps=(six "gym==0.25.2" opencv-python-headless)
apt_pkgs=(build-essential cmake libgl1-mesa-dev libegl-dev python3-dev
  libsdl2-dev libsdl2-image-dev libsdl2-ttf-dev libsdl2-gfx-dev
  libboost-thread-dev libboost-system-dev libboost-filesystem-dev libboost-python-dev)
log() { printf '[setup_grf] %s\n' "$*" >&2; }

[ -x "$vpy" ] || { log "no venv at $venv: run scripts/bootstrap.sh (or make bootstrap) first"; exit 1; }

stamp="$venv/.kdmarl-grf"
want="$(sha256sum "$root/scripts/setup_grf.sh" | cut -d' ' -f1) $gf_spec"
gf_works() { "$vpy" -c 'import gfootball.env, gym, cv2, six' >/dev/null 2>&1; }
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && gf_works; then
  log "up to date ($venv)"
  exit 0
fi

# System packages for the engine build.
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    log "apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    log "missing system packages (install them as root, then re-run): ${missing[*]}"
    exit 1
  fi
fi

# Freeze the venv as name==version constraints (no URLs: pip rejects those in constraints files).
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
"$vpy" -m pip list --disable-pip-version-check --format=freeze 2>/dev/null > "$constraints"
pip_install() {
  "$vpy" -m pip install --disable-pip-version-check --no-input -q -c "$constraints" "$@" \
    2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
}

log "installing ${py_deps[*]}"
pip_install "${py_deps[@]}"

build_log="$venv/grf_build.log"
# The engine's build script runs `python3 -c 'import psutil'`: that must be the venv's python.
export PATH="$venv/bin:$PATH"
log "building $gf_spec from source (about 9 minutes on 2 cores; log: $build_log)"
if ! pip_install -v --no-build-isolation --no-deps --no-binary gfootball "$gf_spec" >"$build_log" 2>&1; then
  log "gfootball build failed; last lines of $build_log:"
  tail -30 "$build_log" >&2
  exit 1
fi

# The venv must be unchanged apart from additions.
changed="$("$vpy" -m pip list --disable-pip-version-check --format=freeze 2>/dev/null | LC_ALL=C sort \
  | comm -13 - <(LC_ALL=C sort "$constraints") || true)"
[ -z "$changed" ] || { log "these installed packages changed version (must not): $changed"; exit 1; }

gf_works || { log "gfootball installed but does not import; see $build_log"; exit 1; }
"$vpy" - <<'PY'
import gfootball.env as football_env
env = football_env.create_environment(
    "academy_3_vs_1_with_keeper", representation="simple115v2", rewards="scoring,checkpoints",
    number_of_left_players_agent_controls=3)
obs = env.reset()
assert obs.shape == (3, 115), obs.shape
env.close()
PY
echo "$want" > "$stamp"
log "done: gfootball works (academy_3_vs_1_with_keeper, simple115v2, 3 players)"
