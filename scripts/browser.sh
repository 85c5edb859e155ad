#!/usr/bin/env bash
# The page tests drive Debian's Chromium (never a downloaded browser) and need Noto fonts
# for Thai; the staff scanner's tests feed Chromium a fake camera video made with ffmpeg.
# Install them if missing; root can, anyone else is told what to run.
set -euo pipefail
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -f /usr/share/fonts/truetype/noto/NotoSansThai-Regular.ttf ] || missing+=(fonts-noto-core)
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "The page tests need: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
