#!/usr/bin/env bash
# README command (2): the whole test suite — unit tests and softhsm-tests against real SoftHSM2
# tokens and real openssl. Installs what it needs when run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
# Each stage's time on stderr, so a slow CI says where its minutes went.
started=$SECONDS
stage() { echo "test.sh: ${1} done at $((SECONDS - started)) s" >&2; }
. softhsm-tests/deps.sh
# neomutt + tmux: the mail-client tests; postfix + Cyrus SASL: the relay; swaks: the SMTP client;
# NSS tools (cmsutil), gpgsm and Bouncy Castle (Java): independent S/MIME peers; time: peak memory;
# ykcs11: Yubico's module, tried against the virtual PIV card (and failing without pcscd elsewhere).
# man-db: deb-check renders the packaged manual page; dpkg-dev: dpkg-shlibdeps for the package.
# libp11's openssl engine and gnupg-pkcs11-scd: the card-command count beside openssl and gpgsm.
# python3: another user's process (a squatted socket, a raw protocol client) under setpriv.
# dovecot-imapd + isync: the IMAP door's upstream mail store and mbsync as its client.
ssmax_deps neomutt tmux postfix sasl2-bin libsasl2-modules swaks libnss3-tools gpgsm \
  openjdk-17-jdk-headless libbcprov-java libbcpkix-java libbcutil-java time ykcs11 man-db dpkg-dev \
  libengine-pkcs11-openssl gnupg-pkcs11-scd python3 dovecot-imapd isync
stage "packages"
# rustup's default profile has both; a minimal one gets them here.
for c in rustfmt clippy; do
  cargo "${c/rustfmt/fmt}" --version >/dev/null 2>&1 || rustup component add "$c"
done
# Style gate: formatted (rustfmt.toml) and lint-free, benches, tests and fuzz targets included.
cargo fmt --check
(cd fuzz && cargo fmt --check)
cargo clippy --locked --all-targets -- -D warnings
stage "fmt + clippy"
# The YubiKey attestation path cannot run here (no YubiKey) but must keep compiling, lint-free.
cargo clippy --locked --all-targets --features yubikey -- -D warnings
stage "clippy (yubikey)"
cargo test --locked
stage "cargo test"
# A short smoke of every fuzz target, built fast (a longer run, with AddressSanitizer:
# bash fuzz/run.sh 600).
FUZZ_CODEGEN_UNITS=16 FUZZ_SANITIZER=none bash fuzz/run.sh 10
stage "fuzz smoke"
# The Debian package: built by packaging/deb.sh (dpkg-deb, with the manual pages and completions),
# its contents and units checked, its page rendered, its completion and binary run.
bash softhsm-tests/deb-check.sh
stage "deb-check"
