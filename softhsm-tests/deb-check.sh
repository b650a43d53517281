#!/usr/bin/env bash
# Builds the Debian package (packaging/deb.sh) and checks what it holds, then runs the packaged
# binary and checks the packaged systemd units. Run by test.sh after the cargo tests.
set -euo pipefail
cd "$(dirname "$0")/.."
# The tests' dev build: the layout, metadata and units are what is checked here, and a release
# build would compile every dependency again (packaging/deb.sh without --dev makes the real one).
deb=$(bash packaging/deb.sh --dev 2>/dev/null | tail -n1)
[ -f "$deb" ] || { echo "deb-check: packaging/deb.sh produced no package" >&2; exit 1; }
pass=0 fail=0
check() { # description, command...
  local what=$1; shift
  if "$@" >/dev/null 2>&1; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "deb-check FAILED: $what" >&2; fi
}
contents=$(dpkg-deb -c "$deb")
info=$(dpkg-deb -I "$deb")
check "binary in /usr/bin" grep -q ' ./usr/bin/ssmax-card$' <<<"$contents"
check "systemd user socket" grep -q './usr/lib/systemd/user/ssmax-card-agent.socket$' <<<"$contents"
check "systemd user service" grep -q './usr/lib/systemd/user/ssmax-card-agent.service$' <<<"$contents"
check "smtp front door unit" grep -q './usr/lib/systemd/user/ssmax-card-smtp.service$' <<<"$contents"
for p in softhsm2 opensc-piv yubikey jpki opensc-generic; do
  check "profile $p" grep -q "./usr/share/ssmax-card/pkcs11-profiles/$p.toml$" <<<"$contents"
done
check "neomutt snippet" grep -q './usr/share/ssmax-card/neomutt/ssmax-card.neomuttrc$' <<<"$contents"
check "protocol doc" grep -q './usr/share/doc/ssmax-card/agent-protocol.md$' <<<"$contents"
check "manual page" grep -q './usr/share/man/man1/ssmax-card.1.gz$' <<<"$contents"
check "manual page per command" grep -q './usr/share/man/man1/ssmax-card-verify.1.gz$' <<<"$contents"
check "bash completion" grep -q './usr/share/bash-completion/completions/ssmax-card$' <<<"$contents"
check "zsh completion" grep -q './usr/share/zsh/vendor-completions/_ssmax-card$' <<<"$contents"
check "fish completion" grep -q './usr/share/fish/vendor_completions.d/ssmax-card.fish$' <<<"$contents"
check "depends on libc" grep -q 'Depends:.*libc6' <<<"$info"
check "recommends opensc" grep -q 'Recommends:.*opensc' <<<"$info"
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
dpkg-deb -x "$deb" "$root"
dpkg-deb -e "$deb" "$root/DEBIAN"
check "files match the package's md5sums" bash -c "cd '$root' && md5sum -c --quiet DEBIAN/md5sums"
check "binary is stripped" bash -c "! file '$root/usr/bin/ssmax-card' | grep -q 'not stripped'"
check "packaged binary runs" "$root/usr/bin/ssmax-card" --version
check "packaged binary lists profiles" "$root/usr/bin/ssmax-card" --agent never profiles
check "service runs the packaged binary" grep -q '^ExecStart=/usr/bin/ssmax-card agent$' "$root/usr/lib/systemd/user/ssmax-card-agent.service"
check "manual page renders" bash -c "man -l '$root/usr/share/man/man1/ssmax-card.1.gz' | grep -q 'Sign and decrypt mail'"
check "bash completion completes a subcommand" bash -c "bash packaging/complete-check.sh '$root/usr/share/bash-completion/completions/ssmax-card' | grep -qx verify"
check "socket is private" grep -q '^SocketMode=0600$' "$root/usr/lib/systemd/user/ssmax-card-agent.socket"
if command -v systemd-analyze >/dev/null 2>&1; then
  # verify wants ExecStart to exist: point a copy of the units at the extracted binary.
  units=$root/units
  mkdir -p "$units"
  cp "$root"/usr/lib/systemd/user/ssmax-card-* "$units/"
  sed -i "s#/usr/bin/ssmax-card#$root/usr/bin/ssmax-card#" "$units/ssmax-card-agent.service" "$units/ssmax-card-smtp.service"
  check "units pass systemd-analyze verify" env XDG_RUNTIME_DIR="$root" systemd-analyze verify --user \
    "$units/ssmax-card-agent.socket" "$units/ssmax-card-agent.service" "$units/ssmax-card-smtp.service"
fi
echo "deb-check: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
