#!/usr/bin/env bash
# System packages the platform needs: espeak-ng speaks the synthetic corpus (tests, demo, benchmarks);
# chromium runs the browser test of the Serve app's upload page (headless).
set -euo pipefail
missing=()
command -v espeak-ng >/dev/null || missing+=(espeak-ng)
command -v chromium >/dev/null || missing+=(chromium)
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "missing system packages: ${missing[*]} (Debian/Ubuntu: sudo apt-get install ${missing[*]})." >&2
  exit 1
fi
