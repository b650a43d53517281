#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time (default 60 s each; CI uses a short smoke).
#   bash fuzz/run.sh [SECONDS] [TARGET...]
# Seeds: fuzz/seeds/<target> (real samples: our and openssl's S/MIME, SSMAX mail, certificates,
# profiles, agent frames) plus softhsm-tests/interop-vectors. A crash fails the run and leaves its input
# in fuzz/artifacts/<target>/; each one found becomes a regression test.
# Targets run side by side, one per core (FUZZ_JOBS): each still gets its SECONDS of a whole core.
# FUZZ_CODEGEN_UNITS: cargo-fuzz builds with one codegen unit (the fastest fuzzing); a short smoke
# gains more from a faster build (CI gives 16).
# FUZZ_SANITIZER: AddressSanitizer by default, for the few unsafe blocks and C under the decoders;
# CI's smoke gives "none": the build takes 40 % less time and each target runs 4 to 7 times as
# many inputs in its seconds, while safe Rust checks its own bounds either way.
# cargo-fuzz needs -Z flags: on the stable toolchain we allow them with RUSTC_BOOTSTRAP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(mime cms cert crl ocsp agent_frame agent_session profile_config smtp_session imap_session imap_structure imap_upstream_framing worker_answer)
jobs=${FUZZ_JOBS:-$(nproc)}
build=(-O)
[ -n "${FUZZ_CODEGEN_UNITS:-}" ] && build+=(--codegen-units "$FUZZ_CODEGEN_UNITS")
[ -n "${FUZZ_SANITIZER:-}" ] && build+=(--sanitizer "$FUZZ_SANITIZER")
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked --version 0.13.2 >/dev/null 2>&1
export RUSTC_BOOTSTRAP=1
vectors=softhsm-tests/interop-vectors/examples-cms
# Built before any run (all targets in one build when all are asked for): the runs side by side
# then find them up to date.
buildlog=$(mktemp)
if [ $# -eq 0 ]; then
  cargo fuzz build "${build[@]}" >"$buildlog" 2>&1 || { cat "$buildlog" >&2; exit 1; }
else
  for t in "${targets[@]}"; do
    cargo fuzz build "${build[@]}" "$t" >"$buildlog" 2>&1 || { cat "$buildlog" >&2; exit 1; }
  done
fi
rm -f "$buildlog"

one() {
  local t=$1 corpus=target/fuzz-corpus/$1 log
  mkdir -p "$corpus"
  cp -n fuzz/seeds/$t/* "$corpus/" 2>/dev/null || true
  case $t in
    cms) [ -d "$vectors" ] && cp -n "$vectors"/binary-files/*.p7m "$corpus/" ;;
    cert) [ -d "$vectors" ] && for c in "$vectors"/certs-and-keys/*.crt; do openssl x509 -in "$c" -outform DER -out "$corpus/$(basename "$c" .crt).der"; done ;;
  esac
  # Inputs past libFuzzer's default 4096 bytes where a bound sits there: an SMTP line over
  # 4096, an agent header over its first 4096-byte step.
  local extra=()
  case $t in smtp_session|agent_frame) extra=(-max_len=16384) ;; esac
  log=$(mktemp)
  if ! cargo fuzz run "${build[@]}" "$t" "$corpus" -- -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 "${extra[@]}" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "fuzz $t: FAILED (input in fuzz/artifacts/$t/)" >&2
    rm -f "$log"
    return 1
  fi
  local runs
  runs=$(grep -oE 'Done [0-9]+ runs in [0-9]+ second' "$log" | tail -n1)
  echo "fuzz $t: ${runs:-ran} — no crash (corpus $(ls "$corpus" | wc -l) inputs)"
  rm -f "$log"
}

failed=0
running=0
for t in "${targets[@]}"; do
  if [ "$running" -ge "$jobs" ]; then
    wait -n || failed=1
    running=$((running - 1))
  fi
  one "$t" &
  running=$((running + 1))
done
while [ "$running" -gt 0 ]; do
  wait -n || failed=1
  running=$((running - 1))
done
# agent_session's in-process agent keeps its socket and audit log in a directory named for its
# process: remove those whose process has ended.
for d in "${TMPDIR:-/tmp}"/ssmax-fuzz-agent-*; do
  if [ -d "$d" ] && ! kill -0 "${d##*-}" 2>/dev/null; then rm -rf "$d"; fi
done
exit "$failed"
