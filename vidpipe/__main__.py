"""The ``vidpipe`` console script and ``python -m vidpipe``: the command line of :mod:`vidpipe.cli`, with a
Ctrl-C during its first seconds (PyTorch and GStreamer loading) ending as one later does: one line, exit
130, no traceback. Kept light: nothing heavy is imported before the ``try``."""

from __future__ import annotations

import signal
import sys

INTERRUPTED = 128 + signal.SIGINT


def main() -> int:
    """Run the command line; a Ctrl-C before it has loaded is an interruption, not a crash."""
    try:
        from .cli import main as command_line

        return command_line()
    except KeyboardInterrupt:  # (the command line catches its own once loaded)
        print("vidpipe: interrupted", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
