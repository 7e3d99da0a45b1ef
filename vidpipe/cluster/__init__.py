"""Scale-out on Ray: a driver (:mod:`.driver`) spreads streams over worker actors (:mod:`.worker`), each a
vidpipe pipeline; only pixel-free records come back. Needs the ``ray`` extra."""

from .connect import ClusterError, check_worker_counts, connect, worker_plan
from .driver import ClusterFigures, ClusterRun
from .pipeline import ClusterPipeline

__all__ = [
    "ClusterError",
    "ClusterFigures",
    "ClusterPipeline",
    "ClusterRun",
    "check_worker_counts",
    "connect",
    "worker_plan",
]
