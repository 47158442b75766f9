#!/usr/bin/env bash
# The shipped unit and scripts/install.sh under a real systemd, on a machine where systemd is not
# PID 1 (CI): systemd boots as PID 1 of private pid/mount/net/uts/ipc/cgroup namespaces, with
# overlays on /etc, /opt, /var and /usr/local so that nothing lands on the host, /proc/sys and /sys
# read-only, and only stub targets plus journald configured. Then it installs the service as a Pi
# user would and checks READY, STATUS=, watchdog restarts, exit 78, journald, the CLI, upgrade and
# uninstall. Needs root, unshare, overlayfs and cgroup2; says SKIP and exits 0 when one is missing.
# Run: npm run test:systemd (after npm run build). Takes about a minute.
set -euo pipefail

if [ "${1:-}" = __boot ]; then
  # inside the new namespaces: prepare the file system, then become systemd
  W=$2
  P=$3
  mount --make-rprivate /
  for d in etc opt var usr/local; do
    mkdir -p "$W/ov/$d/upper" "$W/ov/$d/work"
    mount -t overlay overlay -o "lowerdir=/$d,upperdir=$W/ov/$d/upper,workdir=$W/ov/$d/work" "/$d"
  done
  mount -t proc proc /proc
  mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys
  umount -R /sys/fs/cgroup 2>/dev/null || true
  mount --bind /sys /sys && mount -o remount,bind,ro /sys
  mount -t cgroup2 cgroup2 /sys/fs/cgroup
  mount -t tmpfs -o mode=755 tmpfs /run
  # the project seen from inside at one place, wherever it is (a clone under /tmp would be hidden
  # by the namespace's own /tmp below)
  mkdir -p /run/es-project && mount --bind "$P" /run/es-project
  mount -t tmpfs -o mode=1777 tmpfs /tmp
  hostname es-e2e
  ip link set lo up
  # no host units: stub targets, journald, and what the installer adds to the (overlaid) /etc
  rm -rf /etc/systemd/system/*
  units=/run/es-units
  mkdir -p "$units"
  for t in sysinit basic multi-user network shutdown; do printf '[Unit]\nDescription=%s (stub)\n' "$t" >"$units/$t.target"; done
  printf '[Unit]\nDescription=edge-sensor e2e\nWants=systemd-journald.service\n' >"$units/es-e2e.target"
  for f in systemd-journald.service systemd-journald.socket systemd-journald-dev-log.socket; do cp "/lib/systemd/system/$f" "$units/"; done
  export SYSTEMD_UNIT_PATH=/etc/systemd/system:$units container=es-e2e
  exec /lib/systemd/systemd --system --unit=es-e2e.target --log-target=console
fi

cd "$(dirname "$0")/../.."
PROJECT=$(pwd)
skip() { echo "SKIP systemd e2e: $*"; exit 0; }
fail() { echo "FAIL systemd e2e: $*"; exit 1; }
ok() { echo "ok   $*"; }

[ "$(id -u)" = 0 ] || skip "needs root"
[ ! -d /run/systemd/system ] || skip "systemd is this machine's init: install for real (sudo scripts/install.sh)"
[ -x /lib/systemd/systemd ] || skip "no /lib/systemd/systemd (apt-get install systemd)"
command -v unshare >/dev/null && command -v nsenter >/dev/null && command -v ip >/dev/null || skip "needs unshare, nsenter and ip"
grep -qw overlay /proc/filesystems || skip "no overlayfs"
CG_PARENT=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
[ -n "$CG_PARENT" ] || skip "no cgroup2 hierarchy mounted"
[ -f dist/cli/main.js ] || fail "build first (npm run build)"

W=$(mktemp -d /tmp/es-e2e.XXXXXX)
CG=$CG_PARENT/$(basename "$W")
BOOT_PID=''
SD=''
cleanup() {
  # killing the namespace's PID 1 kills every process in it
  if [ -n "$SD" ]; then kill -9 "$SD" 2>/dev/null || true; fi
  if [ -n "$BOOT_PID" ]; then wait "$BOOT_PID" 2>/dev/null || true; fi
  sleep 0.5
  [ -d "$CG" ] && find "$CG" -depth -type d -exec rmdir {} \; 2>/dev/null
  rm -rf "$W"
}
trap cleanup EXIT

# the namespace's cgroup root is the cgroup its first process is in: a fresh one, so that systemd
# manages only its own processes
mkdir "$CG"
(echo "$BASHPID" >"$CG/cgroup.procs" && exec unshare --cgroup --pid --fork --mount --uts --ipc --net --propagation private "$0" __boot "$W" "$PROJECT") >"$W/boot.log" 2>&1 &
BOOT_PID=$!
SD='' # systemd: unshare's child, PID 1 inside
for _ in $(seq 100); do
  SD=$(pgrep -P "$BOOT_PID" || true)
  [ -n "$SD" ] && nsenter -t "$SD" -a systemctl is-active --quiet systemd-journald.service 2>/dev/null && break
  sleep 0.2
done
[ -n "$SD" ] || { cat "$W/boot.log"; fail "systemd did not boot in the namespace"; }
in_ns() { nsenter -t "$SD" -a "$@"; }
prop() { in_ns systemctl show edge-sensor.service -p "$1" --value; }
wait_until() { # SECONDS DESCRIPTION COMMAND...
  local end=$((SECONDS + $1)) what=$2
  shift 2
  until "$@"; do [ $SECONDS -lt $end ] || fail "timed out waiting for $what"; sleep 0.5; done
}
ok "systemd $(in_ns systemctl --version | head -1 | cut -d' ' -f2) booted as PID 1 of private namespaces"

# a broker inside the namespace, when mosquitto is installed, so that the link goes online
BROKER=0
if command -v mosquitto >/dev/null; then
  in_ns sh -c 'printf "listener 1883 127.0.0.1\nallow_anonymous true\n" >/tmp/m.conf; mosquitto -c /tmp/m.conf >/tmp/m.log 2>&1 &'
  BROKER=1
fi

# --- install as a Pi user would: sudo scripts/install.sh in their fresh clone (no dist yet; the
# dependencies are copied in because this namespace has no network). systemctl restart returns once
# READY=1 arrived.
in_ns useradd --create-home --home-dir /var/tmp/pi pi
(cd "$PROJECT" && git ls-files -z | tar --null -T - -cf -) | in_ns runuser -u pi -- sh -c 'mkdir /var/tmp/pi/edge-sensor && tar -xf - -C /var/tmp/pi/edge-sensor'
in_ns sh -c "cp -a /run/es-project/node_modules /var/tmp/pi/edge-sensor/ && chown -R pi:pi /var/tmp/pi/edge-sensor/node_modules"
in_ns bash -c "cd /var/tmp/pi/edge-sensor && scripts/install.sh" >"$W/install.log" 2>&1 || { cat "$W/install.log"; fail "install.sh"; }
grep -q 'building' "$W/install.log" || fail "the clone was not built"
[ -z "$(in_ns find /var/tmp/pi -user root -print -quit)" ] || fail "root-owned files in the user's clone: $(in_ns find /var/tmp/pi -user root | head -3)"
[ "$(prop ActiveState)" = active ] || fail "not active after install"
[ "$(prop User)" = edge-sensor ] || fail "not running as edge-sensor"
MAIN=$(prop MainPID)
in_ns grep -q '^NoNewPrivs:[[:space:]]*1' "/proc/$MAIN/status" || fail "NoNewPrivs not set"
in_ns grep -q '^Seccomp:[[:space:]]*2' "/proc/$MAIN/status" || fail "no seccomp filter"
in_ns grep -q '^CapBnd:[[:space:]]*0000000000000000' "/proc/$MAIN/status" || fail "capabilities left in the bounding set"
ok "installed from a user's clone (built as its owner); active as edge-sensor (pid $MAIN) with no new privileges, seccomp, no capabilities"
in_ns systemd-analyze security edge-sensor.service --no-pager 2>/dev/null | grep -E 'Overall exposure' | sed 's/^/     /' || true

in_ns journalctl -u edge-sensor -o cat --no-pager | grep -q '"msg":"sampling started"' || fail "no JSON log lines in the journal"
ok "JSON log lines in the journal (journalctl -u edge-sensor -o cat)"

# --- a faster config: every sensor every 2 s; STATUS= and the watchdog ping follow within 15 s
in_ns sh -c 'cat >/etc/edge-sensor/config.yaml' <<'EOF'
database: { path: /var/lib/edge-sensor/edge-sensor.db }
mqtt: { url: "mqtt://127.0.0.1:1883" }
sensors:
  - { type: cpu-load, name: cpu-load, schedule: "*/2 * * * * *" }
  - { type: memory, name: mem, schedule: "*/2 * * * * *" }
  - { type: disk, name: disk, schedule: "*/2 * * * * *" }
EOF
in_ns edge-sensor check-config >/dev/null || fail "edge-sensor check-config (the CLI wrapper, as root)"
# the wrapper drops root to the service's user: a file only root may read stays unreadable
in_ns sh -c 'install -m 0600 /etc/edge-sensor/config.yaml /tmp/es-private.yaml'
out=$(in_ns edge-sensor check-config --config /tmp/es-private.yaml 2>&1 || true)
case "$out" in *EACCES*) ;; *) fail "the CLI wrapper kept root privileges: $out" ;; esac
ok "the CLI under root runs as edge-sensor"
in_ns systemctl restart edge-sensor.service || fail "restart"
PING0=$(prop WatchdogTimestampMonotonic)
want_status='^(online|connecting|unreachable), [0-9]+ pending'
[ "$BROKER" = 1 ] && want_status='^online, [0-9]+ pending'
wait_until 40 "STATUS= '$want_status'" sh -c "[ \"\$(nsenter -t $SD -a systemctl show edge-sensor -p StatusText --value | grep -E '$want_status')\" ]"
wait_until 20 "a watchdog ping" sh -c "[ \"\$(nsenter -t $SD -a systemctl show edge-sensor -p WatchdogTimestampMonotonic --value)\" != '$PING0' ]"
ok "STATUS=\"$(prop StatusText)\"; watchdog pinged"
# the operator's CLI reaches the sandboxed daemon through its control socket in the StateDirectory
out=$(in_ns edge-sensor status --json) || fail "sudo edge-sensor status: $out"
echo "$out" | grep -q '"pending"' || fail "edge-sensor status printed no counts: $out"
in_ns edge-sensor sync >/dev/null || fail "edge-sensor sync (a round trip through the control socket)"
ok "sudo edge-sensor status / sync reach the running daemon"
ROWS=$(in_ns sqlite3 /var/lib/edge-sensor/edge-sensor.db "select count(distinct sensor) from transactions where sensor in ('cpu-load','mem','disk')" 2>/dev/null || echo 0)
[ "$ROWS" = 3 ] || fail "the host sensors did not all read under the sandbox ($ROWS of 3)"
ok "cpu-load, memory and disk read /proc and statfs under the sandbox"

# --- a blocked event loop: the watchdog (3 s in a drop-in) restarts the daemon
in_ns mkdir -p /etc/systemd/system/edge-sensor.service.d
in_ns sh -c 'printf "[Service]\nWatchdogSec=3s\nRestartSec=1s\n" >/etc/systemd/system/edge-sensor.service.d/e2e.conf'
in_ns systemctl daemon-reload
in_ns systemctl restart edge-sensor.service
RESTARTS=$(prop NRestarts)
MAIN=$(prop MainPID)
in_ns kill -STOP "$MAIN"
wait_until 20 "a watchdog restart" sh -c "[ \"\$(nsenter -t $SD -a systemctl show edge-sensor -p NRestarts --value)\" -gt $RESTARTS ] && [ \"\$(nsenter -t $SD -a systemctl show edge-sensor -p ActiveState --value)\" = active ]"
ok "a stopped event loop missed its pings and systemd restarted the daemon (pid $MAIN -> $(prop MainPID))"

# --- invalid configuration: exit 78 and no restart loop
in_ns cp /etc/edge-sensor/config.yaml /tmp/good.yaml
in_ns sh -c 'echo "bogus: 1" >>/etc/edge-sensor/config.yaml'
# a manual restart sets NRestarts back to 0; an automatic one would count 1
in_ns systemctl restart edge-sensor.service 2>/dev/null && fail "started with an invalid config"
sleep 3 # RestartSec=1s in the drop-in: a restart would have happened by now
[ "$(prop ExecMainStatus)" = 78 ] || fail "exit status $(prop ExecMainStatus), expected 78"
[ "$(prop NRestarts)" = 0 ] && [ "$(prop ActiveState)" = failed ] || fail "restarted after exit 78 ($(prop NRestarts) restarts, $(prop ActiveState))"
ok "invalid config: exit 78, failed, not restarted"
in_ns cp /tmp/good.yaml /etc/edge-sensor/config.yaml
in_ns rm -rf /etc/systemd/system/edge-sensor.service.d
in_ns systemctl daemon-reload
in_ns systemctl reset-failed edge-sensor.service
in_ns systemctl start edge-sensor.service || fail "start after fixing the config"

# --- clean stop
in_ns systemctl stop edge-sensor.service
[ "$(prop Result)" = success ] && [ "$(prop ExecMainStatus)" = 0 ] || fail "stop: result $(prop Result), status $(prop ExecMainStatus)"
# journald reads the service's stdout stream on its own time
wait_until 5 "the daemon's 'stopped' line in the journal" sh -c "nsenter -t $SD -a journalctl -u edge-sensor -o cat --no-pager | tail -3 | grep -q '\"msg\":\"stopped\"'"
ok "systemctl stop: exit 0 after a clean shutdown"

# --- upgrade keeps the config and the data, reuses the dependencies, and starts the service
SUM=$(in_ns md5sum /etc/edge-sensor/config.yaml)
N=$(in_ns sqlite3 /var/lib/edge-sensor/edge-sensor.db 'select count(*) from transactions')
in_ns bash -c "cd /run/es-project && scripts/install.sh" >"$W/upgrade.log" 2>&1 || { cat "$W/upgrade.log"; fail "upgrade"; }
grep -q 'dependencies unchanged' "$W/upgrade.log" || fail "upgrade did not reuse the installed dependencies"
[ "$(in_ns md5sum /etc/edge-sensor/config.yaml)" = "$SUM" ] || fail "upgrade changed config.yaml"
[ "$(prop ActiveState)" = active ] || fail "not active after the upgrade"
[ "$(in_ns sqlite3 /var/lib/edge-sensor/edge-sensor.db 'select count(*) from transactions')" -ge "$N" ] || fail "upgrade lost readings"
ok "upgrade: config kept, readings kept, dependencies reused, active"

# --- uninstall keeps the data; --purge removes it and the user
in_ns /opt/edge-sensor/scripts/uninstall.sh >/dev/null
in_ns test ! -e /opt/edge-sensor -a ! -e /etc/systemd/system/edge-sensor.service -a ! -e /usr/local/bin/edge-sensor || fail "uninstall left the program behind"
in_ns test -f /etc/edge-sensor/config.yaml -a -f /var/lib/edge-sensor/edge-sensor.db || fail "uninstall removed config or data"
in_ns getent passwd edge-sensor >/dev/null || fail "uninstall removed the user"
in_ns bash -c "cd /run/es-project && scripts/install.sh --no-start" >/dev/null 2>&1 || fail "reinstall"
in_ns /opt/edge-sensor/scripts/uninstall.sh --purge >/dev/null
in_ns test ! -e /etc/edge-sensor -a ! -e /var/lib/edge-sensor || fail "--purge left config or data"
! in_ns getent passwd edge-sensor >/dev/null || fail "--purge left the user"
ok "uninstall keeps config, data and user; --purge removes them"
echo "systemd e2e: all checks passed"
