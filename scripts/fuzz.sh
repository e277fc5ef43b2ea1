#!/usr/bin/env bash
# Builds the libFuzzer targets (Fuzz/, with the address sanitizer) and runs each for a fixed time.
#   scripts/fuzz.sh [SECONDS] [TARGET...]     default: 60 seconds, every target
# Each run starts from the committed seeds (Fuzz/Corpus/<target>, copied: new inputs go to a scratch
# corpus) and from Fuzz/Regressions/<target>. A crash is copied to Fuzz/Regressions/<target>/ (commit
# it: `swift test` replays it) and the script fails. FUZZ_WORK=DIR keeps the scratch corpora there.
set -uo pipefail
cd "$(dirname "$0")/../Fuzz"
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(text meta binary sasl config engine snapshot)
declare -A exe=([text]=FuzzText [meta]=FuzzMeta [binary]=FuzzBinary [sasl]=FuzzSASL [config]=FuzzConfig [engine]=FuzzEngine [snapshot]=FuzzSnapshot)

# Without --disable-dead-strip a release build drops its coverage counters and fuzzes blind.
# (ld.gold warns once per ASan symbol it cannot export: harmless, and thousands of lines.)
swift build -c release --sanitize=fuzzer -Xswiftc -sanitize=fuzzer,address --disable-dead-strip 2>&1 \
  | grep -v "Cannot export local symbol"
[ "${PIPESTATUS[0]}" -eq 0 ] || exit 1
bin=$(swift build -c release --sanitize=fuzzer -Xswiftc -sanitize=fuzzer,address --disable-dead-strip --show-bin-path)

work=${FUZZ_WORK:-$(mktemp -d /tmp/moat-fuzz.XXXXXX)}
failed=()
for target in "${targets[@]}"; do
  name=${exe[$target]:-}
  [ -n "$name" ] || { echo "unknown target $target" >&2; exit 2; }
  corpus="$work/$target"
  mkdir -p "$corpus" "$work/artifacts-$target" "Regressions/$target"
  cp -n Corpus/"$target"/* "$corpus"/ 2>/dev/null || true
  echo "== $target: ${seconds}s"
  # Swift's own crash handler confuses the sanitizer's report; libFuzzer prints the crash itself.
  SWIFT_BACKTRACE=enable=no "$bin/$name" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -print_final_stats=1 -artifact_prefix="$work/artifacts-$target/" "$corpus" "Regressions/$target" 2>"$work/$target.log"
  rc=$?
  grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb|^#[0-9]+.*DONE" "$work/$target.log" | tr '\n' ' '; echo
  if [ $rc -ne 0 ]; then
    failed+=("$target")
    for crash in "$work/artifacts-$target"/*; do
      [ -e "$crash" ] && cp "$crash" "Regressions/$target/" && echo "reproducer: Fuzz/Regressions/$target/$(basename "$crash")"
    done
    tail -30 "$work/$target.log"
  fi
done
[ -n "${FUZZ_WORK:-}" ] || rm -rf "$work"
if [ ${#failed[@]} -gt 0 ]; then echo "fuzzing found crashes in: ${failed[*]}"; exit 1; fi
echo "fuzzing: no crash in ${targets[*]} (${seconds}s each)"
