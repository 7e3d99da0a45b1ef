"""The base of sinks: the optional parts of the :class:`~vidpipe.sinks.Sink` interface as no-ops."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from ..types import Event, Result, SourceInfo


T = TypeVar("T")


def finish_each(items: Iterable[T], finish: Callable[[T], None], errors: type[Exception] = Exception) -> None:
    """``finish(item)`` for every item, whatever one of them raises (of ``errors``); then the first error."""
    raised = []
    for item in list(items):
        try:
            finish(item)
        except errors as exc:
            raised.append(exc)
    if raised:
        raise raised[0]


class BaseSink:
    """A sink that needs only :meth:`write` (and perhaps :meth:`close`): subclass it and override what you
    need. ``open_stream`` / ``close_stream`` come once per stream (a stream added again after its removal
    comes again), ``event`` with each event of a stream in order with its results. ``needs_pixels``: it
    reads ``result.frame.tensor`` as the full picture (so frames are not scaled for the model)."""

    needs_pixels = False

    def open_stream(self, info: SourceInfo) -> None:
        """A stream starts (its first result or event follows)."""

    def write(self, result: Result) -> None:
        """One result (frame order within a stream)."""

    def event(self, event: Event) -> None:
        """One event of a stream, in order with its results."""

    def close_stream(self, stream: str) -> None:
        """A stream has ended or was removed: finish what is its own (a video file)."""

    def close(self) -> None:
        """The run is over: finish everything."""
