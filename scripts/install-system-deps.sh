#!/usr/bin/env bash
# System packages the platform needs: espeak-ng speaks the synthetic corpus (tests, demo, benchmarks).
set -euo pipefail
if command -v espeak-ng >/dev/null; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng >/dev/null
else
  echo "espeak-ng is missing: install the 'espeak-ng' package (Debian/Ubuntu: sudo apt-get install espeak-ng)." >&2
  exit 1
fi
