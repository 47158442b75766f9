#!/usr/bin/env bash
# Installs or upgrades edge-sensor as a systemd service. See docs/raspberry-pi.md.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: sudo scripts/install.sh [options] [edge-sensor-X.Y.Z.tgz]

Run from a clone (builds it), from an unpacked `npm pack` tarball, or give the tarball's path.
Puts the program in /opt/edge-sensor, the unit in /etc/systemd/system, the CLI in
/usr/local/bin/edge-sensor, a default /etc/edge-sensor/config.yaml (never overwritten; the shipped
one is refreshed as config.yaml.example), creates the system user edge-sensor, then enables and
(re)starts the service. Data in /var/lib/edge-sensor is never touched.

  --root DIR    install below DIR instead of / (an image or a test): no user is created and
                systemd is not asked to start anything (the unit is only enabled offline)
  --node PATH   the node executable the service runs (default: node on root's PATH; >= 20)
  --collector   also install the collector (edge-sensor collect: the fleet's readings into
                PostgreSQL) as the service edge-sensor-collector, with its config
                /etc/edge-sensor/collector.yaml (never overwritten; see docs/collector.md).
                An upgrade refreshes an installed collector's unit without this flag.
  --no-start    install and enable, but do not (re)start the service(s)
  --dry-run     print what would be done and change nothing
  -h, --help    this help
EOF
}

APP=/opt/edge-sensor
ETC=/etc/edge-sensor
STATE=/var/lib/edge-sensor
UNIT=/etc/systemd/system/edge-sensor.service
UNIT_COLLECTOR=/etc/systemd/system/edge-sensor-collector.service
BIN=/usr/local/bin/edge-sensor
USER_NAME=edge-sensor

ROOT=''
NODE=''
TARBALL=''
START=1
DRY=0
COLLECTOR=0
while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT=${2:?--root needs a folder}; shift 2 ;;
    --root=*) ROOT=${1#*=}; shift ;;
    --node) NODE=${2:?--node needs a path}; shift 2 ;;
    --node=*) NODE=${1#*=}; shift ;;
    --no-start) START=0; shift ;;
    --collector) COLLECTOR=1; shift ;;
    --dry-run) DRY=1; shift ;;
    -h | --help) usage; exit 0 ;;
    -*) echo "install: unknown option $1" >&2; usage >&2; exit 64 ;;
    *) TARBALL=$1; shift ;;
  esac
done

log() { printf 'install: %s\n' "$*"; }
# a path that needs no quoting stays as it is (the unit and the wrapper read as they always did)
plain_path() { [[ $1 =~ ^[A-Za-z0-9/._+-]+$ ]]; }
# one word for sh: '...', each ' inside written as '\''
sh_quote() {
  if plain_path "$1"; then printf '%s' "$1"; else printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; fi
}
# one word for a systemd command line: "..." with \ and " escaped, % and $ doubled (specifiers, variables)
systemd_quote() {
  local s=$1
  if plain_path "$s"; then printf '%s' "$s"; return; fi
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//%/%%}
  s=${s//\$/\$\$}
  printf '"%s"' "$s"
}
# the shipped unit with ExecStart running $NODE (quoted for systemd) instead of /usr/bin/node
with_node() {
  local line q
  q=$(systemd_quote "$NODE")
  while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in
      "ExecStart=/usr/bin/node "*) printf 'ExecStart=%s %s\n' "$q" "${line#ExecStart=/usr/bin/node }" ;;
      *) printf '%s\n' "$line" ;;
    esac
  done <"$1"
}
die() { printf 'install: error: %s\n' "$*" >&2; exit 1; }
# every change to the system goes through run, so that --dry-run shows the whole plan
run() {
  if [ "$DRY" = 1 ]; then printf '+ %s\n' "$*"; else "$@"; fi
}

[ "$(uname -s)" = Linux ] || die "edge-sensor runs as a systemd service on Linux only"
if [ -n "$ROOT" ]; then
  ROOT=$(mkdir -p "$ROOT" && cd "$ROOT" && pwd)
  [ "$ROOT" != / ] || ROOT=''
fi
AS_ROOT=1
[ "$(id -u)" = 0 ] || AS_ROOT=0
# npm as root writes its cache and logs under $HOME: never into the invoking user's home (sudo -E)
if [ "$AS_ROOT" = 1 ]; then export HOME=/root; fi
# settings of an npm that runs this script (npm run, npx) would point the owner's npm at root's cache
while read -r v; do unset "$v"; done < <(compgen -e | grep -i '^npm_' || true)
[ "$AS_ROOT" = 1 ] || [ -n "$ROOT" ] || [ "$DRY" = 1 ] || die "run it as root: sudo $0"

# --- Node.js: the service runs it from ExecStart, inside ProtectHome=yes -----------------------
NODE=${NODE:-$(command -v node || true)}
[ -n "$NODE" ] || die "node not found on root's PATH. Install Node.js 20 or newer system-wide (docs/raspberry-pi.md, Prerequisites), or pass --node PATH"
[ -x "$NODE" ] || die "$NODE is not executable"
case "$NODE" in /*) ;; *) NODE=$(cd "$(dirname "$NODE")" && pwd)/$(basename "$NODE") ;; esac
case "$(readlink -f "$NODE")" in
  /home/* | /root/* | /run/user/*) die "$NODE lives in a home folder, which the service cannot see (ProtectHome=yes). Install Node.js system-wide (NodeSource or Debian's nodejs), or pass --node PATH" ;;
esac
NODE_MAJOR=$("$NODE" -p 'process.versions.node.split(".")[0]')
[ "$NODE_MAJOR" -ge 20 ] || die "Node.js 20 or newer is needed; $NODE is $("$NODE" --version)"
NPM=$(dirname "$NODE")/npm
[ -x "$NPM" ] || NPM=$(command -v npm || true)

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=$(dirname "$SCRIPT_DIR")
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

need_npm() { [ -n "$NPM" ] || die "npm not found (Debian: apt install npm); it installs the dependencies"; }

# npm commands in a clone run as the clone's owner: root-owned files in a user's clone break their next npm ci
as_owner() {
  local owner
  owner=$(stat -c %U "$SRC")
  if [ "$AS_ROOT" = 1 ] && [ "$owner" != root ]; then
    (cd "$SRC" && runuser -u "$owner" -- env HOME="$(getent passwd "$owner" | cut -d: -f6)" PATH="$(dirname "$NODE"):$PATH" "$@")
  else
    (cd "$SRC" && "$@")
  fi
}

# --- 1. the package to install, in $PKG --------------------------------------------------------
if [ -n "$TARBALL" ]; then
  [ -f "$TARBALL" ] || die "no such tarball: $TARBALL"
  log "unpacking $TARBALL"
  mkdir "$TMP/pkg"
  tar -xzf "$TARBALL" -C "$TMP/pkg" --strip-components=1 --no-same-owner
  PKG=$TMP/pkg
elif [ -d "$SRC/src" ] && [ -f "$SRC/tsconfig.build.json" ]; then
  # a clone: build it if dist is missing or older than the sources, then take the files npm would pack
  if [ ! -f "$SRC/dist/cli/main.js" ] || [ -n "$(find "$SRC/src" "$SRC/package.json" -newer "$SRC/dist/cli/main.js" -print -quit)" ]; then
    need_npm
    if [ ! -x "$SRC/node_modules/.bin/tsc" ]; then
      log "installing build dependencies in $SRC (npm ci; compiles better-sqlite3 when no prebuilt binary fits)"
      run as_owner "$NPM" ci --no-audit --no-fund
    fi
    log "building $SRC"
    run as_owner "$NPM" run -s build
  fi
  need_npm
  mkdir "$TMP/pkg"
  PKG=$TMP/pkg
  # package.json "files" decides what a device gets, for a clone as for a tarball
  as_owner "$NPM" pack --dry-run --json --ignore-scripts 2>/dev/null |
    "$NODE" -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{for(const f of JSON.parse(s)[0].files)console.log(f.path)})' >"$TMP/files"
  [ -s "$TMP/files" ] || die "npm pack --dry-run listed no files in $SRC"
  (cd "$SRC" && tar -cf - -T "$TMP/files" package-lock.json) | tar -xf - -C "$PKG" --no-same-owner
else
  PKG=$SRC # an unpacked tarball
fi
[ -f "$PKG/dist/cli/main.js" ] && [ -f "$PKG/systemd/edge-sensor.service" ] || die "$PKG is not an edge-sensor package (no dist/cli/main.js or systemd unit)"
# paths go to node as arguments, never into its code: a folder named x'+require(...)+' is only a name
VERSION=$("$NODE" -p 'require(process.argv[1]).version' "$PKG/package.json")
# an upgrade keeps an installed collector's unit current
if [ -e "$ROOT$UNIT_COLLECTOR" ]; then COLLECTOR=1; fi

# --- 2. stage the new version beside the old one, with its production dependencies ------------
DEST=$ROOT$APP
STAGE=$DEST.new
log "staging edge-sensor $VERSION in $STAGE"
run rm -rf "$STAGE"
run mkdir -p "$STAGE"
if [ "$DRY" = 1 ]; then
  printf '+ copy %s into %s (without node_modules)\n' "$PKG" "$STAGE"
else
  (cd "$PKG" && tar -cf - --exclude=./node_modules .) | tar -xf - -C "$STAGE" --no-same-owner
fi

# the native module is bound to the Node ABI and the CPU: reuse installed dependencies only when those and the lockfile match
deps_stamp() {
  { cat "$1/npm-shrinkwrap.json" "$1/package-lock.json" 2>/dev/null || true; "$NODE" -p 'process.versions.modules + " " + process.arch + " " + process.platform'; } | sha256sum | cut -d' ' -f1
}
sqlite_works() { (cd "$1" && "$NODE" -e 'new (require("better-sqlite3"))(":memory:").prepare("select 1").get()') >/dev/null 2>&1; }

if [ "$DRY" = 1 ]; then
  printf '+ install production dependencies in %s (reused when unchanged, else npm ci --omit=dev and a rebuild of better-sqlite3)\n' "$STAGE"
else
  want=$(deps_stamp "$STAGE")
  have_clone_deps=0
  [ "$PKG" = "$TMP/pkg" ] && [ -z "$TARBALL" ] && [ -d "$SRC/node_modules/better-sqlite3" ] && cmp -s "$SRC/package-lock.json" "$STAGE/package-lock.json" && have_clone_deps=1
  if [ -d "$DEST/node_modules" ] && [ "$(cat "$DEST/.deps-stamp" 2>/dev/null)" = "$want" ]; then
    log "dependencies unchanged: reusing $DEST/node_modules"
    cp -a "$DEST/node_modules" "$STAGE/"
  elif [ "$have_clone_deps" = 1 ] && sqlite_works "$SRC"; then
    # the clone's modules were just built for this Node: copy them and drop the dev tools
    log "taking the production dependencies from $SRC/node_modules"
    cp -a "$SRC/node_modules" "$STAGE/"
    (cd "$STAGE" && "$NPM" prune --omit=dev --ignore-scripts --no-audit --no-fund >/dev/null)
  else
    need_npm
    log "installing production dependencies (compiles better-sqlite3 when no prebuilt binary fits: minutes on a Pi)"
    # --ignore-scripts: the package's own prepare would run tsc, which a device has no use for
    if [ -f "$STAGE/npm-shrinkwrap.json" ] || [ -f "$STAGE/package-lock.json" ]; then
      (cd "$STAGE" && "$NPM" ci --omit=dev --ignore-scripts --no-audit --no-fund)
    else
      (cd "$STAGE" && "$NPM" install --omit=dev --ignore-scripts --no-audit --no-fund)
    fi
    (cd "$STAGE" && "$NPM" rebuild better-sqlite3) || die "better-sqlite3 did not build: apt install build-essential python3, then run this again"
  fi
  # keep only the compiled module: the SQLite sources and the compiler's output are 25 MB a device never reads
  bs3=$STAGE/node_modules/better-sqlite3
  if [ -f "$bs3/build/Release/better_sqlite3.node" ]; then
    mv "$bs3/build/Release/better_sqlite3.node" "$TMP/"
    rm -rf "$bs3/build" "$bs3/deps" "$bs3/src"
    mkdir -p "$bs3/build/Release"
    mv "$TMP/better_sqlite3.node" "$bs3/build/Release/"
  fi
  sqlite_works "$STAGE" || die "better-sqlite3 does not load in $STAGE with $NODE"
  echo "$want" >"$STAGE/.deps-stamp"
  if [ "$AS_ROOT" = 1 ]; then chown -R root:root "$STAGE"; fi
fi

# an upgrade must not leave a service behind that exits 78 on its old configuration
if [ -f "$ROOT$ETC/config.yaml" ] && [ "$DRY" = 0 ]; then
  "$NODE" "$STAGE/dist/cli/main.js" check-config --config "$ROOT$ETC/config.yaml" >/dev/null ||
    die "$ETC/config.yaml is not valid for edge-sensor $VERSION (problems above); fix it and run this again. Nothing was changed."
fi
if [ -f "$ROOT$ETC/collector.yaml" ] && [ "$DRY" = 0 ]; then
  "$NODE" "$STAGE/dist/cli/main.js" check-config --collector --config "$ROOT$ETC/collector.yaml" >/dev/null ||
    die "$ETC/collector.yaml is not valid for edge-sensor $VERSION (problems above); fix it and run this again. Nothing was changed."
fi

# --- 3. the service user ------------------------------------------------------------------------
OWN_ETC=()
OWN_STATE=()
if [ -z "$ROOT" ]; then
  if ! getent passwd "$USER_NAME" >/dev/null; then
    log "creating the system user $USER_NAME"
    run useradd --system --user-group --home-dir "$STATE" --no-create-home --shell /usr/sbin/nologin --comment "edge-sensor daemon" "$USER_NAME"
  fi
  OWN_ETC=(-o root -g "$USER_NAME")
  OWN_STATE=(-o "$USER_NAME" -g "$USER_NAME")
else
  log "--root: not creating the user $USER_NAME (the target system needs it: useradd --system --user-group $USER_NAME)"
fi

# --- 4. files in place ---------------------------------------------------------------------------
if [ -d "$DEST" ]; then
  log "replacing $DEST"
  run rm -rf "$DEST.old"
  run mv "$DEST" "$DEST.old"
fi
run mv "$STAGE" "$DEST"
run rm -rf "$DEST.old"

# the folder is the service group's; the config (it may name the broker's password file) is the
# service user's alone, 0600, as the daemon asks of it (the service cannot write it: /etc is read-only to it)
run install -d -m 0750 "${OWN_ETC[@]}" "$ROOT$ETC"
if [ -e "$ROOT$ETC/config.yaml" ]; then
  log "keeping $ETC/config.yaml (the shipped default is in $ETC/config.yaml.example)"
else
  log "writing the default $ETC/config.yaml"
  run install -m 0600 "${OWN_STATE[@]}" "$DEST/config/service.yaml" "$ROOT$ETC/config.yaml"
fi
run install -m 0644 "$DEST/config/service.yaml" "$ROOT$ETC/config.yaml.example"
# systemd creates it too (StateDirectory=); creating it now lets the CLI run before the first start
run install -d -m 0750 "${OWN_STATE[@]}" "$ROOT$STATE"

with_node "$PKG/systemd/edge-sensor.service" >"$TMP/edge-sensor.service"
if command -v systemd-analyze >/dev/null; then
  # what was written is what systemd will read: a path it splits or expands fails here, not at boot
  systemd-analyze verify "$TMP/edge-sensor.service" >"$TMP/verify" 2>&1 || { cat "$TMP/verify" >&2; die "the unit written for $NODE does not pass systemd-analyze verify"; }
fi
run install -d -m 0755 "$ROOT$(dirname "$UNIT")"
run install -m 0644 "$TMP/edge-sensor.service" "$ROOT$UNIT"

if [ "$COLLECTOR" = 1 ]; then
  if [ -e "$ROOT$ETC/collector.yaml" ]; then
    log "keeping $ETC/collector.yaml (the shipped example is in $ETC/collector.yaml.example)"
  else
    log "writing the default $ETC/collector.yaml: set postgres.url (and mqtt.url) before relying on it"
    run install -m 0600 "${OWN_STATE[@]}" "$DEST/config/collector.yaml" "$ROOT$ETC/collector.yaml"
  fi
  run install -m 0644 "$DEST/config/collector.yaml" "$ROOT$ETC/collector.yaml.example"
  with_node "$PKG/systemd/edge-sensor-collector.service" >"$TMP/edge-sensor-collector.service"
  if command -v systemd-analyze >/dev/null; then
    systemd-analyze verify "$TMP/edge-sensor-collector.service" >"$TMP/verify" 2>&1 || { cat "$TMP/verify" >&2; die "the collector unit written for $NODE does not pass systemd-analyze verify"; }
  fi
  run install -m 0644 "$TMP/edge-sensor-collector.service" "$ROOT$UNIT_COLLECTOR"
fi

QNODE=$(sh_quote "$NODE")
cat >"$TMP/cli" <<EOF
#!/bin/sh
# edge-sensor's CLI for the installed service (written by scripts/install.sh).
# Root runs it as the service's user: files it creates beside the database stay the service's,
# and the daemon's control socket in $STATE is reachable.
export EDGE_SENSOR_CONFIG="\${EDGE_SENSOR_CONFIG:-$ETC/config.yaml}"
export EDGE_SENSOR_COLLECTOR_CONFIG="\${EDGE_SENSOR_COLLECTOR_CONFIG:-$ETC/collector.yaml}"
if [ "\$(id -u)" = 0 ]; then
  exec setpriv --reuid=$USER_NAME --regid=$USER_NAME --init-groups -- $QNODE $APP/dist/cli/main.js "\$@"
fi
exec $QNODE $APP/dist/cli/main.js "\$@"
EOF
sh -n "$TMP/cli" || die "the CLI wrapper written for $NODE is not valid sh"
run install -d -m 0755 "$ROOT$(dirname "$BIN")"
run install -m 0755 "$TMP/cli" "$ROOT$BIN"

# --- 5. systemd ------------------------------------------------------------------------------------
if [ -n "$ROOT" ]; then
  if command -v systemctl >/dev/null; then
    run systemctl --root="$ROOT" --quiet enable edge-sensor.service
    if [ "$COLLECTOR" = 1 ]; then run systemctl --root="$ROOT" --quiet enable edge-sensor-collector.service; fi
  fi
  log "installed edge-sensor $VERSION below $ROOT"
  exit 0
fi
run systemctl daemon-reload
run systemctl --quiet enable edge-sensor.service
if [ "$START" = 1 ]; then
  log "(re)starting edge-sensor (returns once the daemon reports READY)"
  if ! run systemctl restart edge-sensor.service; then
    systemctl --no-pager status edge-sensor.service >&2 || true
    die "edge-sensor did not start; see journalctl -u edge-sensor"
  fi
fi
if [ "$COLLECTOR" = 1 ]; then
  run systemctl --quiet enable edge-sensor-collector.service
  if [ "$START" = 1 ]; then
    log "(re)starting edge-sensor-collector"
    if ! run systemctl restart edge-sensor-collector.service; then
      systemctl --no-pager status edge-sensor-collector.service >&2 || true
      die "edge-sensor-collector did not start; see journalctl -u edge-sensor-collector"
    fi
  fi
fi
log "installed edge-sensor $VERSION"
if [ "$COLLECTOR" = 1 ]; then
  cat <<EOF
  collector $ETC/collector.yaml; systemctl status edge-sensor-collector; edge-sensor fleet
            logs: journalctl -u edge-sensor-collector -o cat -f | npx pino-pretty
EOF
fi
cat <<EOF
  program   $APP (node: $NODE)
  config    $ETC/config.yaml
  data      $STATE
  status    systemctl status edge-sensor; sudo edge-sensor status
  logs      journalctl -u edge-sensor -o cat -f | npx pino-pretty
EOF
