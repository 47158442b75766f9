#!/usr/bin/env bash
# Removes the edge-sensor service installed by scripts/install.sh. Keeps the configuration, the
# database and the user unless --purge is given.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: sudo /opt/edge-sensor/scripts/uninstall.sh [--purge] [--root DIR] [--dry-run]

Stops and disables the service (and the collector's, if installed), removes /opt/edge-sensor, the
units and /usr/local/bin/edge-sensor.
Keeps /etc/edge-sensor (configuration), /var/lib/edge-sensor (the database, with any readings not
yet delivered) and the user edge-sensor, unless:

  --purge       also delete the configuration, the database and the user
  --root DIR    uninstall below DIR instead of / (no systemctl except an offline disable)
  --dry-run     print what would be done and change nothing
  -h, --help    this help
USAGE
}

APP=/opt/edge-sensor
ETC=/etc/edge-sensor
STATE=/var/lib/edge-sensor
UNIT=/etc/systemd/system/edge-sensor.service
UNIT_COLLECTOR=/etc/systemd/system/edge-sensor-collector.service
BIN=/usr/local/bin/edge-sensor
USER_NAME=edge-sensor

ROOT=''
PURGE=0
DRY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT=${2:?--root needs a folder}; shift 2 ;;
    --root=*) ROOT=${1#*=}; shift ;;
    --purge) PURGE=1; shift ;;
    --dry-run) DRY=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "uninstall: unknown argument $1" >&2; usage >&2; exit 64 ;;
  esac
done

log() { printf 'uninstall: %s\n' "$*"; }
run() {
  if [ "$DRY" = 1 ]; then printf '+ %s\n' "$*"; else "$@"; fi
}

if [ -n "$ROOT" ]; then
  ROOT=$(cd "$ROOT" && pwd)
  [ "$ROOT" != / ] || ROOT=''
fi
[ "$(id -u)" = 0 ] || [ -n "$ROOT" ] || [ "$DRY" = 1 ] || { echo "uninstall: run it as root: sudo $0" >&2; exit 1; }

if [ -z "$ROOT" ]; then
  # stop first: the daemon finishes its in-flight batches and closes the database cleanly
  run systemctl disable --now edge-sensor.service 2>/dev/null || true
  if [ -e "$UNIT_COLLECTOR" ]; then run systemctl disable --now edge-sensor-collector.service 2>/dev/null || true; fi
elif command -v systemctl >/dev/null; then
  run systemctl --root="$ROOT" --quiet disable edge-sensor.service 2>/dev/null || true
  if [ -e "$ROOT$UNIT_COLLECTOR" ]; then run systemctl --root="$ROOT" --quiet disable edge-sensor-collector.service 2>/dev/null || true; fi
fi
run rm -f "$ROOT$UNIT" "$ROOT$UNIT_COLLECTOR" "$ROOT$BIN"
[ -n "$ROOT" ] || run systemctl daemon-reload
run rm -rf "$ROOT$APP" "$ROOT$APP.new" "$ROOT$APP.old"

if [ "$PURGE" = 1 ]; then
  log "purging the configuration, the database and the user"
  run rm -rf "$ROOT$ETC" "$ROOT$STATE" "$ROOT$UNIT.d" "$ROOT$UNIT_COLLECTOR.d"
  if [ -z "$ROOT" ] && getent passwd "$USER_NAME" >/dev/null; then run userdel "$USER_NAME"; fi
  if [ -z "$ROOT" ] && getent group "$USER_NAME" >/dev/null; then run groupdel "$USER_NAME"; fi
else
  log "kept $ETC (configuration), $STATE (database) and the user $USER_NAME; --purge removes them"
fi
log "edge-sensor removed"
