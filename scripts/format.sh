#!/usr/bin/env bash
# Formats Moat's Swift sources in place with the toolchain's swift-format and the committed
# .swift-format (CI runs `swift format lint --strict` on the same paths and fails on any difference).
# Usage: bash scripts/format.sh           format the tree
#        bash scripts/format.sh --paths   print the paths formatted (for scripts/test.sh)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
paths=(Package.swift Sources Tests Benchmarks/Package.swift Benchmarks/MoatBenchmarks Fuzz/Package.swift Fuzz/Sources)
if [ "${1:-}" = "--paths" ]; then
  echo "${paths[@]}"
  exit 0
fi
swift format format --in-place --recursive --parallel "${paths[@]}"
