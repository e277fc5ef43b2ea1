#!/usr/bin/env bash
# Run all of Moat's tests: peers (Debian + PyPI), swift build, swift test, benchmarks build, Python integration tests.
# Usage: bash scripts/test.sh            (from anywhere; CI runs it as root via .ci/run)
# Env:   SKIP_DEPS=1  skip the dependency installation step
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

section() { printf '\n==== %s ====\n' "$*"; }

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi

# ---------------------------------------------------------------- dependencies
install_deps() {
  # libsasl2-modules: the Cyrus plugins (PLAIN, SCRAM) that pylibmc and memcstat authenticate with.
  # libssl-dev: the OpenSSL 3 that Moat's TLS listeners are built against; openssl makes the tests' certificates.
  # prometheus: its promtool checks and tests packaging/prometheus/moat-alerts.yml (the server itself is not used).
  # help2man, lintian, adduser, binutils: scripts/build-deb.sh's manual page and the package test's checks.
  # tmux: moat top's live view is read back with capture-pane.
  local pkgs=(memcached libmemcached-tools libmemcached-dev libsasl2-dev libsasl2-modules zlib1g-dev netcat-openbsd procps nutcracker nftables iptables python3-firewall iproute2 strace libssl-dev openssl prometheus help2man lintian adduser binutils man-db tmux)
  command -v python3 >/dev/null 2>&1 || pkgs+=(python3)
  python3 -m pip --version >/dev/null 2>&1 || pkgs+=(python3-pip)
  command -v cc >/dev/null 2>&1 || pkgs+=(gcc libc6-dev)
  command -v systemd-analyze >/dev/null 2>&1 || pkgs+=(systemd)
  local missing=()
  local p
  for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("$p")
    fi
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # Where systemd runs, Debian starts the Prometheus server it installs: only promtool is wanted.
    if [ -d /run/systemd/system ] && systemctl is-active -q prometheus 2>/dev/null; then
      $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
    fi
  else
    echo "Debian packages: all present"
  fi

  pip_install() {
    python3 -m pip install -q --disable-pip-version-check "$@" \
      || python3 -m pip install -q --disable-pip-version-check --break-system-packages "$@"
  }
  local pypi=()
  python3 -c 'import pymemcache' 2>/dev/null || pypi+=(pymemcache)
  python3 -c 'import pytest' 2>/dev/null || pypi+=(pytest)
  python3 -c 'import bmemcached' 2>/dev/null || pypi+=(python-binary-memcached)
  python3 -c 'import jsonschema' 2>/dev/null || pypi+=(jsonschema)  # moat audit's JSON and SARIF reports
  python3 -c 'import prometheus_client' 2>/dev/null || pypi+=(prometheus_client)  # parses the metrics endpoint
  if [ "${#pypi[@]}" -gt 0 ]; then
    echo "installing PyPI packages: ${pypi[*]}"
    pip_install "${pypi[@]}"
  fi
  if ! python3 -c 'import pylibmc' 2>/dev/null; then
    if ! python3 -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then
      echo "installing python3-dev (needed to build pylibmc)"
      export DEBIAN_FRONTEND=noninteractive
      $SUDO apt-get update -qq
      $SUDO apt-get install -y -qq --no-install-recommends python3-dev >/dev/null
    fi
    echo "building pylibmc 1.6.3 from source"
    pip_install --no-binary pylibmc pylibmc==1.6.3
  fi
  echo "PyPI packages: pymemcache pytest python-binary-memcached jsonschema prometheus_client pylibmc present"
}

section "dependencies"
if [ "${SKIP_DEPS:-0}" = "1" ]; then echo "skipped (SKIP_DEPS=1)"; else install_deps; fi

# ---------------------------------------------------------------- build & tests
failed=()

# The toolchain's swift-format with the committed .swift-format (120 columns): unformatted code fails CI;
# `bash scripts/format.sh` formats the tree in place.
section "formatting: swift format lint --strict"
if ! swift format lint --strict --recursive --parallel $(bash scripts/format.sh --paths); then failed+=("formatting"); fi

section "swift build (debug)"
swift build
MOAT_BIN="$ROOT/.build/debug/moat"
if [ ! -x "$MOAT_BIN" ]; then
  echo "error: $MOAT_BIN not found after swift build" >&2
  exit 1
fi

section "swift test"
if ! swift test; then failed+=("swift test"); fi

# CI builds the benchmarks (so they keep compiling) but does not run or compare them: timings on shared
# CI machines are noise. The first build resolves and compiles ordo-one/benchmark (~1-2 min).
section "benchmarks: swift build --package-path Benchmarks (build only)"
if ! swift build --package-path Benchmarks; then failed+=("benchmarks build"); fi

# One connection layer serves every listener (TCP, unix, TLS), so the suite runs once.
section "integration tests (pytest, MOAT_BIN=$MOAT_BIN)"
if ! MOAT_BIN="$MOAT_BIN" timeout --kill-after=15 900 python3 -m pytest -q -rs tests/integration; then
  failed+=("integration tests")
fi

# libFuzzer targets (Fuzz/, address sanitizer), a fixed budget each; `swift test` above already replayed
# their seeds and every saved reproducer. FUZZ_SECONDS=0 skips this (the long runs are in docs/reliability.md).
section "fuzzing: scripts/fuzz.sh ${FUZZ_SECONDS:-60} (each target)"
if [ "${FUZZ_SECONDS:-60}" = "0" ]; then
  echo "skipped (FUZZ_SECONDS=0)"
elif ! timeout --kill-after=15 2400 bash scripts/fuzz.sh "${FUZZ_SECONDS:-60}"; then
  failed+=("fuzzing")
fi

section "summary"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "FAILED: ${failed[*]}"
  exit 1
fi
echo "all tests passed"
