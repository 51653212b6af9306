#!/usr/bin/env bash
# Runs the whole test suite: unit tests, golden files, and end-to-end tests against
# real nginx, php-fpm and journald on 127.0.0.1. Needs root (it creates tenant users).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
swift build --build-tests
# One suite at a time: end-to-end suites block while they wait on real servers, and run
# together they starved the cooperative threads that the timing-sensitive suites need.
swift test --skip-build --no-parallel
