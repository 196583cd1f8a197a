#!/usr/bin/env bash
# Runs Shuttle on a self-contained demo: directories under demo/, a config generated from
# config/demo.yaml.in, and a private clamd with a one-signature (EICAR) database, so no system service and no
# network are involved. The daemon runs in the foreground; Ctrl-C stops it and then the private clamd.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$SHUTTLE_ROOT"

DEMO_DIR="$SHUTTLE_ROOT/demo"
CLAMD_DIR="$DEMO_DIR/clamd"
CONFIG="$DEMO_DIR/shuttle.yaml"
TEMPLATE="$SHUTTLE_ROOT/config/demo.yaml.in"
# The same default ACL as the shipped permission model: new entries are read-write for owner and group only.
PRIVATE_DEFAULT_ACL='u::rw-,g::rw-,o::---'

# For a value inside YAML double quotes.
yaml_quoted_text() {
  local text="$1"
  [[ "$text" != *$'\n'* ]] || die "cannot put a value with a newline into the demo config: $text"
  text="${text//\\/\\\\}"
  printf '%s' "${text//\"/\\\"}"
}

create_demo_directories() {
  say "demo directories under $DEMO_DIR"
  mkdir -p "$DEMO_DIR" "$DEMO_DIR/etc" "$CLAMD_DIR"
  for name in in out quarantine hazard log; do
    mkdir -p "$DEMO_DIR/$name"
    chmod 2770 "$DEMO_DIR/$name"
  done
  for name in in out; do
    setfacl -d --set "$PRIVATE_DEFAULT_ACL" "$DEMO_DIR/$name"
  done
  # A placeholder until the demo gets a real OpenPGP key; an existing key is kept. The ledger is not
  # created here: scanner-test writes it.
  local key="$DEMO_DIR/etc/hazard-public.asc"
  [[ -e "$key" ]] || : > "$key"
  chmod 0640 "$key"
}

write_demo_config() {
  local demo owner group text
  demo="$(yaml_quoted_text "$DEMO_DIR")"
  owner="$(yaml_quoted_text "$(id -un)")"
  group="$(yaml_quoted_text "$(id -gn)")"
  text="$(< "$TEMPLATE")"
  # The replacements are quoted so that bash 5.2 does not read `&` in them as the matched text.
  text="${text//@DEMO_DIR@/"$demo"}"
  text="${text//@OWNER@/"$owner"}"
  text="${text//@GROUP@/"$group"}"
  printf '%s\n' "$text" > "$CONFIG"
  say "config $CONFIG (owner $(id -un), group $(id -gn))"
}

daemon_pid=""
# The two functions below run from traps (SC2317).
# shellcheck disable=SC2317
stop_requested() {
  # Before the daemon runs there is nothing to drain: just leave (the EXIT trap stops clamd).
  [[ -n "$daemon_pid" ]] || exit 130
  # Forward exactly one signal per signal received: the daemon drains on the first, exits at once on the second.
  kill -TERM "$daemon_pid" 2> /dev/null || true
}

# shellcheck disable=SC2317
cleanup() {
  if [[ -n "$(private_clamd_pid "$CLAMD_DIR" || true)" ]]; then
    say "stopping the private clamd"
    stop_private_clamd "$CLAMD_DIR"
  fi
}

trap cleanup EXIT
trap stop_requested INT TERM HUP

bash "$SHUTTLE_ROOT/scripts/setup.sh"
create_demo_directories
write_demo_config

say "starting a private clamd on $CLAMD_DIR/clamd.sock"
start_private_clamd "$CLAMD_DIR"
note "$(clamdscan --config-file="$CLAMD_DIR/clamd.conf" --version 2> /dev/null || true)"

say "node bin/shuttle.js check-config --config $CONFIG"
if ! check_output="$(node bin/shuttle.js check-config --config "$CONFIG" 2>&1)"; then
  printf '%s\n' "$check_output" >&2
  die "check-config refused the demo setup (see above)"
fi
printf '%s\n' "$check_output" | sed 's/^/    /'

cat <<EOF

    Drop files into $DEMO_DIR/in; clean files appear in $DEMO_DIR/out. Ctrl-C stops.
    (Log: $DEMO_DIR/log/shuttle.log. Config: $CONFIG.)

EOF

# The daemon gets a session of its own, so that a Ctrl-C reaches only this script, which passes it on once.
# It runs as a child rather than through exec so that the private clamd can be stopped after it exits.
setsid node bin/shuttle.js run --config "$CONFIG" &
daemon_pid=$!
status=0
while true; do
  wait "$daemon_pid" && status=0 || status=$?
  # wait also returns when a trapped signal arrives; keep waiting while the daemon drains.
  kill -0 "$daemon_pid" 2> /dev/null || break
done
say "shuttle exited with status $status"
exit "$status"
