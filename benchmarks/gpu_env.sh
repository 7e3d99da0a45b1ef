# Sourced from a folder made by benchmarks/gpu_bundle.sh (copied there as env.sh): GStreamer, its
# introspection data and the Python bindings from the bundle alone. Once per machine: the libraries are
# unpacked from gst.tar.xz into root/, the weights from their .xz, and the bindings are built for this
# machine's python3. NVIDIA's CUDA converters need NVRTC, taken from PyTorch's CUDA wheels. Exports
# VIDPIPE_BUNDLE_WEIGHTS (the default model's weights, fp16).
bundle=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
py=${PYTHON:-python3}
root="$bundle/root"
if [ ! -f "$root/.unpacked" ] && [ -f "$bundle/gst.tar.xz" ]; then
  echo "unpacking $bundle/gst.tar.xz (once)" >&2
  rm -rf "$root" && mkdir -p "$root"
  "$py" - "$bundle/gst.tar.xz" "$root" <<'EOF' && touch "$root/.unpacked"
import sys, tarfile
with tarfile.open(sys.argv[1]) as archive:  # (xz through Python: no xz tool needed there)
    archive.extractall(sys.argv[2], **({"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}))
EOF
fi
for packed in "$bundle"/weights/*.xz; do
  [ -f "$packed" ] && [ ! -f "${packed%.xz}" ] && "$py" - "$packed" <<'EOF'
import lzma, os, shutil, sys
with lzma.open(sys.argv[1]) as src, open(sys.argv[1][:-3] + ".part", "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
os.replace(sys.argv[1][:-3] + ".part", sys.argv[1][:-3])
EOF
done
export VIDPIPE_BUNDLE_WEIGHTS="$bundle/weights/ssd_mobilenet_v2_coco-fp16.pt"
libs="$root/lib"
# GL, EGL, GLX, X11, xcb (what nvcodec's libgstgl links to): the machine's own where it has them all.
have_gl=1
for need in libGL.so.1 libEGL.so.1 libGLX.so.0 libGLdispatch.so.0 libX11.so.6 libxcb.so.1; do
  { /sbin/ldconfig -p 2>/dev/null || ldconfig -p 2>/dev/null; } | grep -qE "^\s*$need " || have_gl=0
done
[ "$have_gl" = 1 ] || libs="$libs:$root/lib-gl"
export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export GST_PLUGIN_SYSTEM_PATH_1_0="$root/gstreamer-1.0" GST_PLUGIN_PATH_1_0=""
export GST_PLUGIN_SCANNER_1_0="$root/libexec/gst-plugin-scanner"
export GST_REGISTRY_1_0="${TMPDIR:-/tmp}/vidpipe-gst-registry.bin"
export GI_TYPELIB_PATH="$root/girepository-1.0"
site="$bundle/site-$("$py" -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')"
if [ ! -d "$site/gi" ] && ls "$bundle"/src/pygobject-*.tar.gz >/dev/null 2>&1; then
  echo "building PyGObject for $("$py" --version) into $site (once)" >&2
  work=$(mktemp -d)
  (
    dev=$(echo "$root"/dev/root/usr/lib/*-linux-gnu)  # (the architecture the bundle was made for)
    arch=$(basename "$dev")
    export PKG_CONFIG="$root/dev/pkgconf" PKG_CONFIG_PATH="" PKG_CONFIG_LIBDIR="$dev/pkgconfig"
    # ffi.h lies under the multiarch include folder, libffi.so (a link into lib/) beside the .pc files
    export CFLAGS="-I$root/dev/root/usr/include/$arch${CFLAGS:+ $CFLAGS}"
    export LDFLAGS="-L$dev -L$root/lib${LDFLAGS:+ $LDFLAGS}"
    "$py" -m pip install -q --no-index --no-deps --target "$work/tools" "$bundle"/src/*.whl &&
      PYTHONPATH="$work/tools${PYTHONPATH:+:$PYTHONPATH}" "$py" -m pip install -q --no-index --no-deps --no-build-isolation \
        --target "$site" --config-settings=setup-args=-Dpycairo=disabled \
        "$bundle"/src/pygobject-*.tar.gz
  ) || { echo "could not build PyGObject here (needs a C compiler, meson, ninja and Python's headers)" >&2; }
  rm -rf "$work"
fi
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
nvrtc=$("$py" - 2>/dev/null <<'EOF'
import glob, os, site
dirs = site.getsitepackages() + [site.getusersitepackages()]
found = sorted(p for d in dirs for p in glob.glob(os.path.join(d, "nvidia", "**", "libnvrtc.so*"), recursive=True)
               if "builtins" not in p and "alt" not in os.path.basename(p))
print(found[0] if found else "")
EOF
)
[ -n "$nvrtc" ] && export GST_CUDA_NVRTC_LIBNAME="$nvrtc"
unset bundle py root libs have_gl need site nvrtc packed
