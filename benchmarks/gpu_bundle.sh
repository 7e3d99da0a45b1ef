#!/usr/bin/env bash
# Makes .gpu-bundle/: what benchmarks/gpu_on_device.sh needs on a GPU machine that has the NVIDIA driver
# and PyTorch but no system GStreamer (and no network): this machine's GStreamer 1.22 (the libraries, the
# plugins the pipeline uses, NVIDIA's nvcodec among them with the GL/EGL/X libraries it links to, and
# their introspection data), the sources of the Python bindings (PyGObject) with the headers to build
# them there for its Python, and the default model's weights (fp16). Libraries and headers travel as one
# xz archive, the weights xz-compressed: under 45 MB in all (checked at the end). Run here (Debian 12,
# vidpipe installed), then on the GPU machine: bash benchmarks/gpu_on_device.sh (benchmarks/gpu_env.sh,
# copied as env.sh, unpacks it once and builds the bindings once).
#
#     bash benchmarks/gpu_bundle.sh [--no-downloads] [.gpu-bundle]
#
# --no-downloads: leave out the PyGObject build kit (Debian -dev packages, the sdist): a bundle for a
# machine that has GStreamer's Python bindings, or to check the rest of this script offline.
set -euo pipefail
cd "$(dirname "$0")/.."
downloads=1
[ "${1:-}" = --no-downloads ] && { downloads=0; shift; }
out=${1:-.gpu-bundle}
arch=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
sys=/usr/lib/$arch
python=${PYTHON:-.venv/bin/python}
pygobject=3.50.0  # the last release for girepository-1.0 (Debian 12's GObject introspection)
limit=45000000  # bytes: the bundle travels with the working tree (64 MiB in all)

stage=$(mktemp -d) && trap 'rm -rf "$stage"' EXIT
rm -rf "$out" && mkdir -p "$out"/{src,weights}
root=$stage/root  # what the archive holds, unpacked on the GPU machine as .gpu-bundle/root
mkdir -p "$root"/{lib,lib-gl,gstreamer-1.0,girepository-1.0,libexec,dev/root}

# The plugins a vidpipe source uses (decodebin and its parsers and decoders, conversion, appsink), and
# nvcodec: NVIDIA's decoders and CUDA converters, registered where the driver loads.
plugins=(coreelements playback typefindfunctions app videoconvertscale videorate videofilter isomp4 matroska
  videoparsersbad nvcodec openh264)  # software H.264 by openh264 (libav would bring ~100 MB of codecs)
for p in "${plugins[@]}"; do cp -L "$sys/gstreamer-1.0/libgst$p.so" "$root/gstreamer-1.0/"; done
cp -L "$sys/gstreamer1.0/gstreamer-1.0/gst-plugin-scanner" "$root/libexec/"
typelibs=(GLib-2.0 GObject-2.0 GModule-2.0 Gio-2.0 Gst-1.0 GstBase-1.0 GstApp-1.0 GstVideo-1.0 GstPbutils-1.0
  GstAudio-1.0 GstTag-1.0)
for t in "${typelibs[@]}"; do cp -L "$sys/girepository-1.0/$t.typelib" "$root/girepository-1.0/"; done

# Every library they load, except the C and C++ runtimes (the GPU machine's own are newer). nvcodec links
# to libgstgl, hence to GL, EGL, GLX (libglvnd's dispatchers: the vendor's library is loaded only when a GL
# context is made), X11 and xcb: without them the plugin does not load (issue 31). Those go in lib-gl/,
# used there only where the machine has none of its own (gpu_env.sh).
skip='^(libc|libm|libdl|libpthread|librt|libresolv|libstdc\+\+|libgcc_s|ld-linux-x86-64)\.'
gl='^(libGL|libGLX|libGLdispatch|libEGL|libX11|libX11-xcb|libxcb|libXau|libXdmcp|libgbm|libdrm|libwayland-[a-z]+)\.'
libs=$(ldd "$root"/gstreamer-1.0/*.so "$root"/libexec/gst-plugin-scanner "$sys"/libgirepository-1.0.so.1 \
  "$sys"/libgstapp-1.0.so.0 "$sys"/libgstpbutils-1.0.so.0 "$sys"/libgstvideo-1.0.so.0 | awk '/=> \//{print $3}' | sort -u)
for lib in $libs; do
  name=$(basename "$lib")
  if [[ $name =~ $skip ]]; then continue; fi
  if [[ $name =~ $gl ]]; then cp -L "$lib" "$root/lib-gl/$name"; else cp -L "$lib" "$root/lib/$name"; fi
done
for need in libGL.so.1 libEGL.so.1 libGLX.so.0 libGLdispatch.so.0 libX11.so.6 libxcb.so.1; do
  [ -f "$root/lib-gl/$need" ] || { echo "gpu_bundle: $need missing (nvcodec needs it)" >&2; exit 1; }
done

# To build PyGObject there: Debian's -dev packages unpacked under dev/root, their pkg-config files made
# relative to where they lie, their link names pointing to the bundle's libraries, and pkgconf itself.
# (gpu_env.sh builds with CFLAGS=-I dev/root/usr/include/<arch> for ffi.h and LDFLAGS=-L dev/root/usr/lib/<arch>
# for -lffi: meson found neither there otherwise.)
if [ "$downloads" = 1 ]; then
  debs=$(mktemp -d) && trap 'rm -rf "$stage" "$debs"' EXIT
  (cd "$debs" && apt-get download -q libglib2.0-dev libgirepository1.0-dev libffi-dev zlib1g-dev libmount-dev \
    libblkid-dev libselinux1-dev libsepol-dev libpcre2-dev >/dev/null 2>&1)
  for deb in "$debs"/*.deb; do dpkg -x "$deb" "$root/dev/root"; done
  rm -rf "$root/dev/root/usr/share" "$root/dev/root/usr/bin" "$root/dev/root/usr/lib/$arch/glib-2.0/"gio-querymodules* \
    "$root/dev/root/usr/lib/$arch/"*.a
  sed -i -e 's|=/usr/lib$|=/usr/lib/'"$arch"'|; s|${exec_prefix}/lib$|${exec_prefix}/lib/'"$arch"'|' \
    -e 's#^\(prefix\|exec_prefix\|libdir\|includedir\)=/usr#\1=${pcfiledir}/../../..#' "$root/dev/root/usr/lib/$arch/pkgconfig/"*.pc
  for link in "$root/dev/root/usr/lib/$arch/"*.so; do
    target=$(readlink "$link")  # libX.so -> libX.so.N, the name the bundle's copy has
    [ -f "$root/lib/$target" ] || cp -L "$sys/$target" "$root/lib/" 2>/dev/null || continue
    ln -sfn "../../../../../lib/$target" "$link"
  done
  [ -f "$root/dev/root/usr/include/$arch/ffi.h" ] || { echo "gpu_bundle: no ffi.h for $arch" >&2; exit 1; }
  cp -L /usr/bin/pkgconf "$root/dev/" && cp -L "$sys"/libpkgconf.so.3 "$root/lib/"
  "$python" - "$out/src" "$pygobject" <<'EOF2'
import hashlib, re, sys, urllib.request
folder, version = sys.argv[1], sys.argv[2]
page = urllib.request.urlopen("https://pypi.org/simple/pygobject/", timeout=120).read().decode()
url, digest = re.search(rf'href="([^"]+/pygobject-{re.escape(version)}\.tar\.gz)#sha256=([0-9a-f]+)"', page).groups()
data = urllib.request.urlopen(url, timeout=300).read()
assert hashlib.sha256(data).hexdigest() == digest, "pygobject sdist: sha256 mismatch"
open(f"{folder}/pygobject-{version}.tar.gz", "wb").write(data)
EOF2
  "$python" -m pip download -q --no-deps -d "$out/src" meson-python pyproject-metadata
fi
tar -C "$root" -cf - . | xz -9 -T2 > "$out/gst.tar.xz"

# The default model's weights, converted here (the frozen graph stays behind), in fp16, xz-compressed.
"$python" - "$out/weights/ssd_mobilenet_v2_coco-fp16.pt" <<'EOF2'
import sys, torch
from vidpipe.models.ssd_mobilenet_v2 import load_state_dict
torch.save({k: v.half() if v.is_floating_point() else v for k, v in load_state_dict().items()}, sys.argv[1])
EOF2
xz -9 -T2 "$out/weights/ssd_mobilenet_v2_coco-fp16.pt"
cp benchmarks/gpu_env.sh "$out/env.sh"
size=$(du -sb "$out" | cut -f1)
du -sh "$out"/*
echo "$out: $size bytes (limit $limit)"
if [ "$size" -gt "$limit" ]; then
  echo "gpu_bundle: $out is $size bytes, over the $limit the device's copy allows" >&2
  exit 1
fi
