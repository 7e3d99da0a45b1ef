"""The ``vidpipe`` console script and ``python -m vidpipe``: the command line of :mod:`vidpipe.cli`, with a
Ctrl-C during its first seconds (PyTorch and GStreamer loading) ending as one later does: one line, exit
130, no traceback. Kept light: nothing heavy is imported before the ``try``."""

from __future__ import annotations

import os
import signal
import sys

INTERRUPTED = 128 + signal.SIGINT
STANDARD = ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w"))


def standard_streams() -> None:
    """A standard stream the caller closed (a shell's ``2>&-``, a bare supervisor) becomes /dev/null:
    Python would leave ``sys.stderr`` None (the progress bar and every message fail on it), and the
    next file opened would take its number (GStreamer's own warnings written into an output)."""
    for fd, name, mode in STANDARD:
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)  # the lowest free number: this one, unless one below is free too
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            if getattr(sys, name) is None:
                setattr(sys, name, open(fd, mode, closefd=False))  # noqa: SIM115 (for the whole process)


def main() -> int:
    """Run the command line; a Ctrl-C before it has loaded is an interruption, not a crash."""
    standard_streams()
    try:
        from .cli import main as command_line

        return command_line()
    except KeyboardInterrupt:  # (the command line catches its own once loaded)
        print("vidpipe: interrupted", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
