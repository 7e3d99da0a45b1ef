#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages vidpipe needs (GStreamer, its Python bindings, Graphviz, a
# TrueType font for annotations, the GL library OpenCV loads) when any
# is missing: with apt-get as root, through sudo otherwise; without either it prints the command to run.
# --test adds what the tests start for real: a mosquitto broker and a headless Chromium.
set -euo pipefail

PACKAGES=(
  python3 python3-venv python3-dev python3-gi python3-gst-1.0
  gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 gir1.2-gst-rtsp-server-1.0
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav
  gstreamer1.0-python3-plugin-loader graphviz fonts-dejavu-core libgl1
)
if [[ "${1:-}" == "--test" ]]; then
  PACKAGES=(mosquitto chromium)
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

command="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}"
if [[ $(id -u) -eq 0 ]]; then
  echo "installing system packages: ${missing[*]}"
  bash -c "$command"
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  echo "installing system packages with sudo: ${missing[*]}"
  sudo bash -c "$command"
else
  echo "vidpipe needs these system packages: ${missing[*]}" >&2
  echo "run as root:  sudo bash -c '$command'" >&2
  exit 1
fi
