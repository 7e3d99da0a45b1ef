"""One C++ exception unwinder per process, whatever the import order.

Debian's GStreamer links ``libunwind``, which exports the same ``_Unwind_*`` functions as GCC's
``libgcc_s``. When GStreamer is loaded after a C++ library such as PyTorch or OpenCV, ``libstdc++``
already throws through ``libgcc_s`` while every library loaded later (OpenVINO's plugins) resumes
unwinding through ``libunwind``: the first exception OpenVINO throws and catches inside itself aborts
the process (``terminate called after throwing an instance of 'std::runtime_error'``, or a segfault).

:func:`prefer_gcc_unwinder` (called when vidpipe is imported) puts ``libgcc_s`` in the global scope first,
so every library loaded later binds to it; where GStreamer came before vidpipe and after a C++ library,
that is too late and :func:`mixed_unwinders` says so, so that OpenVINO is not started in that process.
"""

from __future__ import annotations

import contextlib
import ctypes
import os

_GCC = "libgcc_s.so.1"


def prefer_gcc_unwinder() -> None:
    """Load ``libgcc_s`` into the global symbol scope (a no-op where it is already there first)."""
    with contextlib.suppress(OSError):  # (not a glibc system with GCC's runtime: nothing to arrange)
        ctypes.CDLL(_GCC, mode=os.RTLD_NOW | os.RTLD_GLOBAL)


def _global_unwinder() -> str | None:
    """The file of the library that ``_Unwind_Resume`` resolves to for libraries loaded from now on."""
    try:
        address = ctypes.cast(ctypes.CDLL(None)._Unwind_Resume, ctypes.c_void_p).value
    except (AttributeError, OSError):
        return None
    for name, start, end in _loaded():
        if start <= address < end:
            return name
    return None


def _loaded() -> list[tuple[str, int, int]]:
    """The mapped files with their address ranges, from ``/proc/self/maps``."""
    found = []
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                parts = line.split()
                if len(parts) >= 6:
                    start, end = (int(x, 16) for x in parts[0].split("-"))
                    found.append((parts[5], start, end))
    except OSError:
        pass
    return found


def _load_order() -> list[str]:
    """The shared objects of the process in the order they were loaded (the dynamic linker's list)."""

    class Info(ctypes.Structure):
        _fields_ = [("addr", ctypes.c_void_p), ("name", ctypes.c_char_p)]

    names: list[str] = []
    callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(Info), ctypes.c_size_t, ctypes.c_void_p)

    def visit(info, _size, _data) -> int:
        names.append((info.contents.name or b"").decode(errors="replace"))
        return 0

    try:
        ctypes.CDLL(None).dl_iterate_phdr(callback_type(visit), None)
    except (AttributeError, OSError):
        return []
    return names


def mixed_unwinders() -> bool:
    """True when libraries loaded from now on would unwind through ``libunwind`` while ``libstdc++``,
    loaded before it, throws through ``libgcc_s``: a C++ library started now may abort the process."""
    unwinder = _global_unwinder()
    if unwinder is None or "libunwind" not in os.path.basename(unwinder):
        return False
    order = [os.path.basename(name) for name in _load_order()]
    stdcpp = next((i for i, name in enumerate(order) if name.startswith("libstdc++")), None)
    unwind = next((i for i, name in enumerate(order) if name.startswith("libunwind")), None)
    return stdcpp is not None and unwind is not None and stdcpp < unwind


MIXED_MESSAGE = (
    "GStreamer was loaded before vidpipe and after a C++ library (PyTorch, OpenCV): its libunwind and "
    "libgcc_s would both unwind C++ exceptions and OpenVINO would abort the process; import vidpipe first "
    "(or start Python with LD_PRELOAD=libgcc_s.so.1)"
)
