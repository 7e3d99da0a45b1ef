"""Joining or starting the Ray cluster of a run: ``ray`` (a local one, ended with this process even when it
is killed), ``auto`` (the running one), ``ray://HOST:PORT`` (checked to answer within seconds)."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import urllib.parse
import warnings
from collections.abc import Callable
from pathlib import Path

from .. import rules
from ..errors import VidpipeError

ANSWER_TIMEOUT = 3.0  # seconds for a cluster's address to accept a connection, and then to answer


class ClusterError(VidpipeError):
    """The cluster cannot be used (Ray missing, an address that does not answer, every worker gone)."""


def import_ray():
    """Ray, or a one-line error naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise ClusterError("--cluster needs Ray: pip install 'vidpipe[ray]'") from None
    return ray


def check_worker_counts(spell: Callable[[str], str] = str, **counts: int | None) -> None:
    """``workers``, ``streams_per_worker``, ``cpus_per_worker`` (those given: not None) each at least 1, by
    :func:`vidpipe.rules.count`; :class:`ClusterError` naming the first that is not, as ``spell`` writes its
    name (``--workers`` on the command line)."""
    for name, value in counts.items():
        if value is not None:
            try:
                rules.count(value)
            except rules.RuleError as exc:
                raise ClusterError(f"{spell(name)} {exc}") from None


def worker_plan(device: str, workers: int | None, cpus_per_worker: float) -> tuple[int, dict]:
    """How many Ray workers a run starts on the joined cluster, and the resources each takes: ``workers``
    when given, else one per GPU on CUDA and one per ``cpus_per_worker`` CPUs otherwise (at least one)."""
    ray = import_ray()
    gpu = str(device).startswith("cuda")
    resources = {"num_gpus": 1, "num_cpus": 1} if gpu else {"num_cpus": cpus_per_worker}
    available = ray.cluster_resources().get("GPU" if gpu else "CPU", 1)
    return workers or max(1, int(available // (1 if gpu else cpus_per_worker))), resources


def connect(cluster: str) -> bool:
    """Join (``auto``, ``ray://HOST:PORT``, ``HOST:PORT``) or start (``ray``) a Ray cluster; True when
    this process started it (and stops it at the end)."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    quiet = {"include_dashboard": False, "log_to_driver": False, "configure_logging": True,
             "logging_level": logging.ERROR}  # fmt: skip
    try:
        if cluster == "ray":
            ray.init(num_cpus=os.cpu_count(), **quiet)
            _supervise(ray)
            return True
        if cluster == "auto":
            ray.init(address="auto", **{k: v for k, v in quiet.items() if k != "include_dashboard"})
            return False
        _check_reachable(cluster)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ray.init(address=cluster, **{k: v for k, v in quiet.items() if k not in ("include_dashboard",)})
        return False
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ClusterError(f"--cluster {cluster}: cannot connect ({first})") from None


_SUPERVISORS: list[subprocess.Popen] = []


def _supervise(ray) -> None:
    """A process of its own that ends the local Ray just started if this one dies without stopping it
    (SIGKILL, a crash): its agents would otherwise linger for minutes (see ``supervisor.py``)."""
    try:
        session = ray._private.worker._global_node.get_session_dir_path()
    except AttributeError:  # (another Ray version: its own timeouts apply)
        return
    for done in [p for p in _SUPERVISORS if p.poll() is not None]:
        _SUPERVISORS.remove(done)
    script = Path(__file__).with_name("supervisor.py")
    quiet = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    command = [sys.executable, str(script), str(os.getpid()), session]
    _SUPERVISORS.append(subprocess.Popen(command, start_new_session=True, **quiet))


def _check_reachable(address: str) -> None:
    """Fail in seconds, in one line, when nothing listens at a ``ray://HOST:PORT`` address."""
    try:
        parts = urllib.parse.urlsplit(address if "://" in address else f"ray://{address}")
        host, port = parts.hostname, parts.port or 10001
    except ValueError:
        raise ClusterError(f"--cluster {address}: not an address (expected ray://HOST:PORT)") from None
    if not host:
        raise ClusterError(f"--cluster {address}: not an address (expected ray://HOST:PORT)")
    try:
        socket.create_connection((host, port), timeout=ANSWER_TIMEOUT).close()
    except OSError as exc:
        raise ClusterError(f"--cluster {address}: cannot connect ({exc.strerror or exc})") from None
    import grpc  # (Ray's own dependency) Ray's client retries a silent server for 30 s: 5 are enough

    channel = grpc.insecure_channel(f"{host}:{port}")
    try:
        grpc.channel_ready_future(channel).result(timeout=ANSWER_TIMEOUT)
    except grpc.FutureTimeoutError:
        raise ClusterError(
            f"--cluster {address}: no answer in {ANSWER_TIMEOUT:g} s (the port is open, but no Ray answers there)"
        ) from None
    finally:
        channel.close()
