"""Stopping on a signal: the first SIGINT, SIGTERM or SIGHUP finishes the outputs, a second exits at once."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def install_stop_signals(
    stop: Callable[[], None], received: list[int] | None = None
) -> tuple[Callable[[], None], list[int]]:
    """First SIGINT (Ctrl-C), SIGTERM (docker, systemd, Kubernetes, ``timeout``) or SIGHUP: ``stop()``
    (stop reading, finish the frames in flight, finalise every output). A second one: exit at once.
    Returns a function that restores the previous handlers, and the list the signal numbers go to
    (``received``: the list of handlers installed before, so that no signal is forgotten)."""
    received = [] if received is None else received

    def handler(signum: int, _frame: object) -> None:
        received.append(signum)
        if len(received) > 1:
            os._exit(128 + received[0])
        name = signal.Signals(signum).name
        print(f"\nvidpipe: {name}: stopping, finishing the outputs (again to quit at once)", file=sys.stderr)
        stop()

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    return lambda: [signal.signal(sig, old) for sig, old in previous.items()], received
