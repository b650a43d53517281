#!/usr/bin/env bash
# Installs (as root) or names (otherwise) the Debian packages the demo and the tests need.
# Sourced by demo.sh and test.sh; extra packages as arguments (the tests' mail clients and relay).
ssmax_deps() {
  local pkgs=(softhsm2 opensc openssl libp11-kit-dev gcc g++ systemd libpcsclite-dev pkg-config pcscd vsmartcard-vpcd "$@")
  local missing=()
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -eq 0 ]; then
    echo "installing: ${missing[*]}" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "missing packages; run:  sudo apt-get install -y ${missing[*]}" >&2
    return 1
  fi
}
