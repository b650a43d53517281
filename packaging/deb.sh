#!/usr/bin/env bash
# Builds the Debian package: the release binary, then the manual pages and shell completions the
# binary writes from its own clap definitions, then cargo-deb with those among the assets.
# Prints the package's path last.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked
rm -rf target/assets
target/release/ssmax-card generate-docs --out target/assets
gzip -9n target/assets/man/man1/*.1
cargo deb --locked --no-build "$@"
