#!/usr/bin/env bash
# Makes .gpu-bundle/: what benchmarks/gpu.py needs on a GPU machine that has the NVIDIA driver and
# PyTorch but no system GStreamer (and no network): this machine's GStreamer 1.22 (the libraries, the
# plugins the pipeline uses, NVIDIA's nvcodec among them, and their introspection data), the sources of
# the Python bindings (PyGObject) with the headers to build them there for its Python, and the default
# model's weights (fp16, to travel light). Run here (Debian 12, vidpipe installed), then on the GPU
# machine: bash benchmarks/gpu_on_device.sh (it builds the bindings once and runs the benchmark).
#
#     bash benchmarks/gpu_bundle.sh [.gpu-bundle]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-.gpu-bundle}
arch=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
sys=/usr/lib/$arch
python=${PYTHON:-.venv/bin/python}
pygobject=3.50.0  # the last release for girepository-1.0 (Debian 12's GObject introspection)

rm -rf "$out" && mkdir -p "$out"/{lib,gstreamer-1.0,girepository-1.0,libexec,dev/root,src,weights}

# The plugins a vidpipe source uses (decodebin and its parsers and decoders, conversion, appsink), and
# nvcodec: NVIDIA's decoders and CUDA converters, registered where the driver loads.
plugins=(coreelements playback typefindfunctions app videoconvertscale videorate videofilter isomp4 matroska
  videoparsersbad nvcodec openh264)  # software H.264 by openh264 (libav would bring ~100 MB of codecs)
for p in "${plugins[@]}"; do cp -L "$sys/gstreamer-1.0/libgst$p.so" "$out/gstreamer-1.0/"; done
cp -L "$sys/gstreamer1.0/gstreamer-1.0/gst-plugin-scanner" "$out/libexec/"
typelibs=(GLib-2.0 GObject-2.0 GModule-2.0 Gio-2.0 Gst-1.0 GstBase-1.0 GstApp-1.0 GstVideo-1.0 GstPbutils-1.0
  GstAudio-1.0 GstTag-1.0)
for t in "${typelibs[@]}"; do cp -L "$sys/girepository-1.0/$t.typelib" "$out/girepository-1.0/"; done

# Every library they load, except the C and C++ runtimes (the GPU machine's own are newer).
skip='^(libc|libm|libdl|libpthread|librt|libresolv|libstdc\+\+|libgcc_s|ld-linux-x86-64|libGL|libGLX|libGLdispatch|libX11|libxcb|libEGL)\.'
libs=$(ldd "$out"/gstreamer-1.0/*.so "$out"/libexec/gst-plugin-scanner "$sys"/libgirepository-1.0.so.1 \
  "$sys"/libgstapp-1.0.so.0 "$sys"/libgstpbutils-1.0.so.0 "$sys"/libgstvideo-1.0.so.0 | awk '/=> \//{print $3}' | sort -u)
for lib in $libs; do
  name=$(basename "$lib")
  [[ $name =~ $skip ]] || cp -L "$lib" "$out/lib/$name"
done

# To build PyGObject there: Debian's -dev packages unpacked under dev/root, their pkg-config files made
# relative to where they lie, their link names pointing to the bundle's libraries, and pkgconf itself.
debs=$(mktemp -d) && trap 'rm -rf "$debs"' EXIT
(cd "$debs" && apt-get download -q libglib2.0-dev libgirepository1.0-dev libffi-dev zlib1g-dev libmount-dev \
  libblkid-dev libselinux1-dev libsepol-dev libpcre2-dev >/dev/null 2>&1)
for deb in "$debs"/*.deb; do dpkg -x "$deb" "$out/dev/root"; done
rm -rf "$out/dev/root/usr/share" "$out/dev/root/usr/bin" "$out/dev/root/usr/lib/$arch/glib-2.0/"gio-querymodules* \
  "$out/dev/root/usr/lib/$arch/"*.a
sed -i -e 's|=/usr/lib$|=/usr/lib/'"$arch"'|; s|${exec_prefix}/lib$|${exec_prefix}/lib/'"$arch"'|' \
  -e 's#^\(prefix\|exec_prefix\|libdir\|includedir\)=/usr#\1=${pcfiledir}/../../..#' "$out/dev/root/usr/lib/$arch/pkgconfig/"*.pc
for link in "$out/dev/root/usr/lib/$arch/"*.so; do
  target=$(readlink "$link")  # libX.so -> libX.so.N, the name the bundle's copy has
  [ -f "$out/lib/$target" ] || cp -L "$sys/$target" "$out/lib/" 2>/dev/null || continue
  ln -sfn "../../../../../lib/$target" "$link"
done
cp -L /usr/bin/pkgconf "$out/dev/" && cp -L "$sys"/libpkgconf.so.3 "$out/lib/"
"$python" - "$out/src" "$pygobject" <<'EOF'
import hashlib, re, sys, urllib.request
folder, version = sys.argv[1], sys.argv[2]
page = urllib.request.urlopen("https://pypi.org/simple/pygobject/", timeout=120).read().decode()
url, digest = re.search(rf'href="([^"]+/pygobject-{re.escape(version)}\.tar\.gz)#sha256=([0-9a-f]+)"', page).groups()
data = urllib.request.urlopen(url, timeout=300).read()
assert hashlib.sha256(data).hexdigest() == digest, "pygobject sdist: sha256 mismatch"
open(f"{folder}/pygobject-{version}.tar.gz", "wb").write(data)
EOF
"$python" -m pip download -q --no-deps -d "$out/src" meson-python pyproject-metadata

# The default model's weights, converted here (the frozen graph stays behind), in fp16.
"$python" - "$out/weights/ssd_mobilenet_v2_coco-fp16.pt" <<'EOF'
import sys, torch
from vidpipe.models.ssd_mobilenet_v2 import load_state_dict
torch.save({k: v.half() if v.is_floating_point() else v for k, v in load_state_dict().items()}, sys.argv[1])
EOF
cp benchmarks/gpu_env.sh "$out/env.sh"
du -sh "$out"
