#!/usr/bin/env bash
# Fuzzes the protocol decoder, every request field, and project path validation with cargo-fuzz
# (libFuzzer).
# FUZZ_SECONDS sets the time per target (CI uses a short run; see docs/security.md for a long one).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-60}"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
fi
# cargo-fuzz passes unstable compiler flags; the stable toolchain accepts them this way.
export RUSTC_BOOTSTRAP=1
for target in decode project_path request_fields; do
  echo "fuzzing $target for ${seconds}s"
  # Work on a copy of the seed corpus so that a run leaves the repository unchanged.
  work="fuzz/target/corpus/$target"
  mkdir -p "$work"
  cp -n "fuzz/corpus/$target"/* "$work"/ 2>/dev/null || true
  log="fuzz/target/$target.log"
  if ! cargo fuzz run --sanitizer none "$target" "$work" -- \
    -max_total_time="$seconds" -max_len=65536 -print_final_stats=1 > "$log" 2>&1; then
    # A build error comes first and a crash last: show both ends, without the progress lines.
    grep -v '^#[0-9]' "$log" > "$log.short" || true
    { head -n 40 "$log.short"; echo "…"; tail -n 40 "$log.short"; } >&2
    echo "fuzz: $target failed (whole output in $log)" >&2
    exit 1
  fi
  tail -n 5 "$log"
done
