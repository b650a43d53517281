#!/usr/bin/env bash
# Builds the Debian package with dpkg-deb: the release binary (stripped), the manual pages and
# shell completions the binary writes from its own clap definitions, the systemd user units, the
# PKCS#11 profiles, the neomutt hooks and the docs. Depends comes from dpkg-shlibdeps, as
# debhelper would have it. Prints the package's path last.
#   bash packaging/deb.sh            the release build, as users get it
#   bash packaging/deb.sh --dev      the dev build the tests made (CI checks the layout without
#                                    compiling everything a second time, optimised)
set -euo pipefail
cd "$(dirname "$0")/.."
profile=release
if [ "${1:-}" = --dev ]; then profile=debug; fi
if [ "$profile" = release ]; then cargo build --release --locked; else cargo build --locked; fi
bin=target/$profile/ssmax-card
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
arch=$(dpkg --print-architecture)
root=target/debian-root
rm -rf "$root" target/assets
"$bin" generate-docs --out target/assets
gzip -9n target/assets/man/man1/*.1

put() { # mode, destination directory, files...
  local mode=$1 dir=$root/$2
  shift 2
  install -d -m 755 "$dir"
  install -m "$mode" "$@" "$dir"
}
put 755 usr/bin "$bin"
strip --strip-unneeded "$root/usr/bin/ssmax-card"
put 644 usr/lib/systemd/user packaging/systemd/ssmax-card-agent.socket packaging/systemd/ssmax-card-agent.service \
  packaging/systemd/ssmax-card-smtp.service
put 644 usr/share/ssmax-card/pkcs11-profiles pkcs11-profiles/*.toml
put 644 usr/share/ssmax-card/neomutt packaging/neomutt/ssmax-card.neomuttrc
put 644 usr/share/doc/ssmax-card README.md docs/*.md
put 644 usr/share/man/man1 target/assets/man/man1/*.1.gz
install -D -m 644 target/assets/bash-completion/ssmax-card.bash "$root/usr/share/bash-completion/completions/ssmax-card"
put 644 usr/share/zsh/vendor-completions target/assets/zsh/_ssmax-card
put 644 usr/share/fish/vendor_completions.d target/assets/fish/ssmax-card.fish
cat >"$root/usr/share/doc/ssmax-card/copyright" <<'EOF'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: ssmax-card
Files: *
Copyright: ssmax-card developers
License: see the project's repository
EOF

# dpkg-shlibdeps reads debian/control for the package list; give it a minimal one of its own.
shlib=$(mktemp -d)
trap 'rm -rf "$shlib"' EXIT
mkdir -p "$shlib/debian"
printf 'Source: ssmax-card\n\nPackage: ssmax-card\nArchitecture: any\n' >"$shlib/debian/control"
depends=$(cd "$shlib" && dpkg-shlibdeps -O "$OLDPWD/$root/usr/bin/ssmax-card" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')

install -d -m 755 "$root/DEBIAN"
cat >"$root/DEBIAN/control" <<EOF
Package: ssmax-card
Version: $version-1
Architecture: $arch
Maintainer: ssmax-card developers <ssmax-card@example.invalid>
Section: mail
Priority: optional
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Depends: $depends
Recommends: opensc, pinentry-gnome3 | pinentry-curses
Suggests: softhsm2, ykcs11
Description: sign and decrypt mail with the key on your card (SSMAX user side)
 The user-side half of SSMAX: signs outgoing mail and decrypts incoming mail with the key on
 your card (PIV employee card, YubiKey, My Number card for signing) through PKCS#11, so the
 private key never reaches the PC. Includes the agent with systemd user units (socket
 activation), manual pages and shell completions.
EOF
(cd "$root" && find usr -type f -exec md5sum {} + | sort -k2) >"$root/DEBIAN/md5sums"
mkdir -p target/debian
deb=target/debian/ssmax-card_${version}-1_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
