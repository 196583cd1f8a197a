#!/usr/bin/env bash
# Prepares this checkout to run and test Shuttle on Debian 12: the system packages it needs, the npm
# dependencies, the native addon and the compiled TypeScript. Safe to run again: each step is skipped when
# its result is already up to date, and the output says which.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$SHUTTLE_ROOT"

# clamav-daemon and clamav give clamd, clamdscan and sigtool; acl gives getfacl/setfacl; libacl1-dev is what
# the native addon links against; gnupg encrypts hazard archives; samba and smbclient are for the
# integration tests that go through a real share.
APT_PACKAGES=(clamav clamav-daemon acl libacl1-dev gnupg samba smbclient systemd)
ADDON=native/build/Release/shuttle_native.node
MIN_NODE_MAJOR=20

check_tools() {
  command -v dpkg-query > /dev/null || die "dpkg-query not found: this script supports Debian and its derivatives"
  command -v node > /dev/null || die "node not found: install Node.js $MIN_NODE_MAJOR or later first"
  command -v npm > /dev/null || die "npm not found: install it with Node.js"
  local major
  major="$(node -p 'process.versions.node.split(".")[0]')"
  (( major >= MIN_NODE_MAJOR )) || die "Node.js $(node --version) is too old; Shuttle needs $MIN_NODE_MAJOR or later"
  say "node $(node --version), npm $(npm --version)"
}

# Installing clamav-daemon and clamav-freshclam would start both services at once, and freshclam would try to
# reach the signature mirrors. A policy-rc.d that answers 101 ("action forbidden") keeps every service stopped
# during the install; it is only put in place when none exists, and removed again right after.
POLICY_RC_D=/usr/sbin/policy-rc.d
placed_policy_rc_d=no
remove_policy_rc_d() {
  if [[ "$placed_policy_rc_d" == yes ]]; then
    rm -f "$POLICY_RC_D"
    placed_policy_rc_d=no
  fi
}

install_packages() {
  local missing=()
  for package in "${APT_PACKAGES[@]}"; do
    package_installed "$package" || missing+=("$package")
  done
  if (( ${#missing[@]} == 0 )); then
    say "apt packages: all present, skipped (${APT_PACKAGES[*]})"
    return
  fi
  is_root || die "missing apt packages (${missing[*]}); run this script as root to install them"
  say "apt packages: installing ${missing[*]}"
  if [[ ! -e "$POLICY_RC_D" ]]; then
    trap remove_policy_rc_d EXIT
    printf '#!/bin/sh\nexit 101\n' > "$POLICY_RC_D"
    chmod 0755 "$POLICY_RC_D"
    placed_policy_rc_d=yes
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
  remove_policy_rc_d
}

# node-gyp downloads Node's headers unless told where they are. Node packages for Debian install them under
# <prefix>/include/node; using those needs no network and always matches the running node.
use_local_node_headers() {
  local prefix
  prefix="$(node -p 'require("node:path").resolve(process.execPath, "..", "..")')"
  if [[ -z "${npm_config_nodedir:-}" && -f "$prefix/include/node/common.gypi" ]] &&
    [[ "$(npm config get nodedir 2> /dev/null)" == undefined ]]; then
    export npm_config_nodedir="$prefix"
  fi
}

node_modules_current() {
  # npm ci writes node_modules/.package-lock.json; it is older than the lock file only when the lock file
  # changed since.
  [[ -f node_modules/.package-lock.json && ! package-lock.json -nt node_modules/.package-lock.json ]]
}

# npm ci also runs the package's install script (the addon) and prepare (tsc to dist/).
install_node_modules() {
  say "npm dependencies: npm ci"
  npm ci --no-audit --no-fund || die "npm ci failed (exit status $?)"
}

# npm ci only warns when the addon fails to build; the daemon cannot run without it, so rebuild here and
# let the compiler's error stop the script.
build_native_addon() {
  if [[ -f "$ADDON" ]] && ! any_newer_than "$ADDON" native/src native/binding.gyp; then
    say "native addon: $ADDON is up to date, skipped"
    return
  fi
  say "native addon: building $ADDON"
  npm run --silent build:native
  [[ -f "$ADDON" ]] || die "node-gyp finished but $ADDON is missing"
}

build_typescript() {
  say "TypeScript: compiling src/ to dist/"
  npm run --silent build
}

check_tools
install_packages
use_local_node_headers
if node_modules_current; then
  say "npm dependencies: up to date with package-lock.json, skipped"
  build_native_addon
  build_typescript
else
  install_node_modules
  build_native_addon
fi
say "setup complete"
