"""The pipeline: streams read in their own threads, batched fairly across streams, detected, passed
through stages, written to sinks opened per stream."""

from .batcher import Batcher
from .runner import Pipeline, StreamsFailedError
from .specs import StreamSpec, read_sources_file, stream_specs
from .stages import ClassFilter, Stage
from .stats import Stats, StreamStats
from .streams import StreamReader

__all__ = [
    "Batcher",
    "ClassFilter",
    "Pipeline",
    "Stage",
    "Stats",
    "StreamReader",
    "StreamSpec",
    "StreamStats",
    "StreamsFailedError",
    "read_sources_file",
    "stream_specs",
]
