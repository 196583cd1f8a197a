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
  mkdir -p "$DEMO_DIR/run"
}

# The demo's "security staff": a key pair whose secret half stays in demo/gpg, so that the archives the demo
# makes can be opened. A real host gets only the public key of its security team. An existing key is kept.
create_demo_key() {
  local home="$DEMO_DIR/gpg" key="$DEMO_DIR/etc/hazard-public.asc"
  if [[ -s "$key" ]] && grep -q 'BEGIN PGP PUBLIC KEY BLOCK' "$key"; then
    return
  fi
  say "demo hazard key pair in $home (public key: $key)"
  rm -rf "$home"
  mkdir -p "$home"
  chmod 0700 "$home"
  local gpg=(gpg --homedir "$home" --batch --no-tty --pinentry-mode loopback --passphrase '')
  "${gpg[@]}" --quick-generate-key 'Shuttle Demo Security <security@demo.invalid>' ed25519 sign never 2> /dev/null
  local fingerprint
  fingerprint="$("${gpg[@]}" --with-colons --list-secret-keys 2> /dev/null | awk -F: '$1 == "fpr" { print $10; exit }')"
  "${gpg[@]}" --quick-add-key "$fingerprint" cv25519 encrypt never 2> /dev/null
  "${gpg[@]}" --armor --export "$fingerprint" > "$key" 2> /dev/null
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
create_demo_key
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

# shuttle run starts only with scanner versions that passed scanner-test: test the private clamd now.
say "node bin/shuttle.js scanner-test --config $CONFIG"
if ! test_output="$(node bin/shuttle.js scanner-test --config "$CONFIG" 2>&1)"; then
  printf '%s\n' "$test_output" >&2
  die "scanner-test failed against the private clamd (see above)"
fi
printf '%s\n' "$test_output" | sed 's/^/    /'

cat <<EOF

    Drop files into $DEMO_DIR/in; clean files appear in $DEMO_DIR/out. Ctrl-C stops.
    A file holding the EICAR test string is encrypted into $DEMO_DIR/hazard instead; open an archive with
      gpg --homedir $DEMO_DIR/gpg --decrypt $DEMO_DIR/hazard/<name>.gpg
    Ask the running daemon what it is doing with
      node bin/shuttle.js status --config $CONFIG
    (Log: $DEMO_DIR/log/shuttle.log; audit trail: $DEMO_DIR/log/audit-*.jsonl. Config: $CONFIG.)

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
