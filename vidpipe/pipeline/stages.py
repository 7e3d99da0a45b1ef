"""Stages: small steps applied to every result, in order, between the detector and the sinks.

A stage is any callable ``Result -> Result``; it sees the results of each stream in frame order (so
per-stream state, such as a tracker's, is safe). The built-in ones (class filter, tracker, counters) are
put together per stream by :class:`vidpipe.analytics.plan.Analysis`; a run's own stages follow them.
"""

from ..analytics.plan import ClassFilter, Stage

__all__ = ["ClassFilter", "Stage"]
