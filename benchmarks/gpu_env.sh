# Sourced from a folder made by benchmarks/gpu_bundle.sh (copied there as env.sh): GStreamer, its
# introspection data and the Python bindings from the bundle alone; the bindings are built for this
# machine's python3 on first use. NVIDIA's CUDA converters need NVRTC, taken from PyTorch's CUDA wheels.
bundle=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
py=${PYTHON:-python3}
export LD_LIBRARY_PATH="$bundle/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export GST_PLUGIN_SYSTEM_PATH_1_0="$bundle/gstreamer-1.0" GST_PLUGIN_PATH_1_0=""
export GST_PLUGIN_SCANNER_1_0="$bundle/libexec/gst-plugin-scanner"
export GST_REGISTRY_1_0="${TMPDIR:-/tmp}/vidpipe-gst-registry.bin"
export GI_TYPELIB_PATH="$bundle/girepository-1.0"
site="$bundle/site-$("$py" -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')"
if [ ! -d "$site/gi" ]; then
  echo "building PyGObject for $("$py" --version) into $site (once)" >&2
  work=$(mktemp -d)
  (
    export PKG_CONFIG="$bundle/dev/pkgconf" PKG_CONFIG_PATH=""
    export PKG_CONFIG_LIBDIR=$(echo "$bundle"/dev/root/usr/lib/*/pkgconfig)
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
unset bundle py site nvrtc
