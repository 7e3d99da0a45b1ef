"""The supervisor of a local Ray started by a run: ``python supervisor.py DRIVER_PID SESSION_DIR``.

Run by its path (it imports nothing of vidpipe: a few MB, not torch's hundreds), in a session of its
own, it notes the processes of the Ray session every half second: the driver's children that name
``SESSION_DIR`` (GCS, raylet, dashboard, monitors) and all their descendants (the agents and workers,
whose titles no longer name it). When the driver dies without stopping Ray (SIGKILL, a crash), it kills
them at once, rather than leaving them to Ray's own timeouts (minutes). When they are all gone (Ray
was shut down), it ends.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time

import psutil

PERIOD = 0.5  # seconds between looks


def session_processes(driver: psutil.Process, session_dir: str) -> list[psutil.Process]:
    """The driver's processes of this Ray session, descendants included."""
    found = []
    for child in driver.children():
        with contextlib.suppress(psutil.Error):
            if child.pid != os.getpid() and session_dir in " ".join(child.cmdline()):
                found += [child, *child.children(recursive=True)]
    return found


def supervise(driver_pid: int, session_dir: str) -> None:
    """Watch until the driver dies (then kill the session's processes) or the session ends."""
    try:
        driver = psutil.Process(driver_pid)
    except psutil.Error:
        return
    known: dict[int, psutil.Process] = {}
    watched = False  # the session's processes were seen (they run when this starts)
    while driver.is_running() and driver.status() != psutil.STATUS_ZOMBIE:
        with contextlib.suppress(psutil.Error):
            for process in session_processes(driver, session_dir):
                known.setdefault(process.pid, process)
        known = {pid: p for pid, p in known.items() if p.is_running()}  # (the same process: no reused pid)
        if watched and not known:
            return  # Ray was shut down: nothing left to watch
        watched = watched or bool(known)
        time.sleep(PERIOD)
    for process in known.values():
        with contextlib.suppress(psutil.Error):
            process.kill()


if __name__ == "__main__":
    supervise(int(sys.argv[1]), sys.argv[2])
