# shellcheck shell=bash disable=SC2034
# Shared by setup.sh, demo.sh and test.sh; sourced, never run. Expects `set -euo pipefail` in the caller.
# (SC2034: the variables here are used by the scripts that source this file.)

SHUTTLE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# The 68-byte EICAR test string. Single quotes keep `$` and `\` literal; printf '%s' adds no newline.
# shellcheck disable=SC2016
EICAR='X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*'

# A unix socket path must fit in sun_path (108 bytes, NUL included).
MAX_SOCKET_PATH_BYTES=107

say() { printf '==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

is_root() { [[ "$(id -u)" -eq 0 ]]; }

# dpkg-query prints nothing useful for a package it has never heard of, and fails; either way it is missing.
package_installed() {
  [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

# True when any file under the given paths is newer than the reference file.
any_newer_than() {
  local reference="$1"
  shift
  [[ -n "$(find "$@" -newer "$reference" -print -quit 2>/dev/null)" ]]
}

# Debian 12 ships an AppArmor profile for /usr/sbin/clamd that only lets it read /etc/clamav, /var/lib/clamav
# and /tmp. A private clamd needs its config, database and socket elsewhere, and must read the files shuttle
# hands it. Profiles attach by executable path, so a copy of the binary runs unconfined; only our own
# processes use it. Prints the clamd to run.
private_clamd_binary() {
  local directory="$1"
  local profiles=/sys/kernel/security/apparmor/profiles
  if [[ -r "$profiles" ]] && grep -q '^/usr/sbin/clamd (enforce)' "$profiles"; then
    install -m 0755 /usr/sbin/clamd "$directory/clamd"
    printf '%s\n' "$directory/clamd"
  else
    printf '%s\n' /usr/sbin/clamd
  fi
}

# Writes a clamd setup under DIRECTORY: a one-signature database built from the EICAR string (works offline,
# no freshclam), and a clamd.conf with a unix socket, a pid file and 200M limits that report, rather than
# pass, anything over them. clamd runs as the invoking user: there is no User line.
prepare_private_clamd() {
  local directory="$1"
  local socket="$directory/clamd.sock"
  if (( ${#socket} > MAX_SOCKET_PATH_BYTES )); then
    die "the clamd socket path $socket is longer than $MAX_SOCKET_PATH_BYTES bytes; move the repository to a shorter path"
  fi
  mkdir -p "$directory/db" "$directory/tmp"
  printf '%s' "$EICAR" > "$directory/eicar-sample"
  sigtool --md5 "$directory/eicar-sample" > "$directory/db/test.hdb"
  cat > "$directory/clamd.conf" <<EOF
# Private clamd for the Shuttle demo; written by scripts/demo.sh on every start.
Foreground no
PidFile $directory/clamd.pid
LocalSocket $socket
FixStaleSocket yes
LogFile $directory/clamd.log
LogTime yes
DatabaseDirectory $directory/db
TemporaryDirectory $directory/tmp
StreamMaxLength 200M
MaxFileSize 200M
MaxScanSize 200M
AlertExceedsMax yes
EOF
}

# The pid in DIRECTORY/clamd.pid, if that process is still a clamd started with DIRECTORY/clamd.conf.
private_clamd_pid() {
  local directory="$1" pid
  pid="$(cat "$directory/clamd.pid" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$directory/clamd.conf" || return 1
  printf '%s\n' "$pid"
}

start_private_clamd() {
  local directory="$1" binary
  stop_private_clamd "$directory"
  prepare_private_clamd "$directory"
  binary="$(private_clamd_binary "$directory")"
  : > "$directory/clamd.log"
  # With Foreground no, clamd detaches into its own session: a Ctrl-C meant for the daemon does not reach it.
  if ! "$binary" -c "$directory/clamd.conf" < /dev/null; then
    tail -n 20 "$directory/clamd.log" >&2 || true
    die "clamd did not start (config $directory/clamd.conf, log $directory/clamd.log)"
  fi
  # Loading even a one-signature database takes a few seconds: clamd still loads its built-in engine.
  if ! clamdscan --config-file="$directory/clamd.conf" --ping=60:1 > /dev/null 2>&1; then
    tail -n 20 "$directory/clamd.log" >&2 || true
    die "clamd did not answer on $directory/clamd.sock within 60 s (log $directory/clamd.log)"
  fi
}

# Stops the clamd this directory's pid file names, and nothing else. Safe to call when none runs.
stop_private_clamd() {
  local directory="$1" pid
  pid="$(private_clamd_pid "$directory")" || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}
