#!/usr/bin/env bash
# The device path from a tarball: npm pack, unpack, run the shipped scripts/install.sh into a root
# folder (production dependencies fresh from the registry with the shipped lockfile, better-sqlite3
# downloaded or compiled, no TypeScript), then run the installed daemon. Needs the npm registry.
# Run: npm run test:package (a minute or two: better-sqlite3 compiles when no prebuilt binary fits).
set -euo pipefail
cd "$(dirname "$0")/../.."
fail() { echo "FAIL package: $*"; exit 1; }
ok() { echo "ok   $*"; }
T=$(mktemp -d /tmp/es-pkg.XXXXXX)
trap 'rm -rf "$T"' EXIT

# prepare builds dist, prepack adds the lockfile as npm-shrinkwrap.json, postpack removes it again
npm pack --pack-destination "$T" >"$T/pack.log" 2>&1 || { cat "$T/pack.log"; fail "npm pack"; }
TGZ=$(ls "$T"/edge-sensor-*.tgz)
[ ! -e npm-shrinkwrap.json ] || fail "postpack left npm-shrinkwrap.json in the project"
tar -tzf "$TGZ" >"$T/files"
grep -qx 'package/npm-shrinkwrap.json' "$T/files" || fail "no lockfile (npm-shrinkwrap.json) in the tarball"
! grep -Eq '^package/(src|test)/|\.ts$|\.map$' "$T/files" || fail "sources, tests or source maps in the tarball"
ok "$(basename "$TGZ"): $(stat -c %s "$TGZ") bytes, $(wc -l <"$T/files") files"

tar -xzf "$TGZ" -C "$T"
start=$SECONDS
"$T/package/scripts/install.sh" --root "$T/root" >"$T/install.log" 2>&1 || { cat "$T/install.log"; fail "install.sh from the unpacked tarball"; }
APP=$T/root/opt/edge-sensor
[ -d "$APP/node_modules/better-sqlite3" ] && [ ! -e "$APP/node_modules/typescript" ] && [ ! -e "$APP/node_modules/vitest" ] || fail "not exactly the production dependencies"
ok "installed from the tarball in $((SECONDS - start)) s; $(du -sh "$APP" | cut -f1) on disk ($(du -sh "$APP/node_modules" | cut -f1) of it node_modules)"

node "$APP/dist/cli/main.js" check-config --config "$T/root/etc/edge-sensor/config.yaml" >/dev/null || fail "check-config from the installed copy"
cat >"$T/run.yaml" <<EOF
database: { path: $T/run.db }
mqtt: { url: "mqtt://127.0.0.1:1" }
sensors: [{ type: simulated, name: sim, schedule: "* * * * * *" }]
EOF
node "$APP/dist/cli/main.js" run --config "$T/run.yaml" >"$T/run.log" 2>&1 &
pid=$!
sleep 3
kill -TERM "$pid"
wait "$pid" || fail "the installed daemon exited $?: $(tail -3 "$T/run.log")"
grep -q '"msg":"stopped"' "$T/run.log" && grep -Eq '"written":[1-9]' "$T/run.log" || fail "the installed daemon wrote nothing: $(tail -3 "$T/run.log")"
ok "the installed copy validates its config and runs (readings written, exit 0 on SIGTERM)"
