"""Frames a decoder took in but could not decode (damaged data): the pts of every compressed frame that
enters it, matched against the frames that come out, so that each place where frames went missing is
reported wherever it was in the file."""

from __future__ import annotations

import bisect
import logging
import threading
from collections.abc import Iterable

from ..errors import DamagedSourceError, TruncatedSourceError
from ..types import Gap, SourceInfo
from . import Gst

log = logging.getLogger(__name__)
PTS_TOLERANCE = Gst.MSECOND  # decoders may round timestamps


class DamageLedger:
    """The decoder's input of one source (``text`` names it in messages) and the gaps found so far."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._input: list[int] = []  # pts (ns) of compressed frames that went into the decoder
        self._lock = threading.Lock()
        self._last_decoded: int | None = None
        self.gaps: list[Gap] = []

    def note_input(self, _pad: Gst.Pad, info: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
        """A pad probe on the decoder's sink pad (GStreamer's streaming thread)."""
        buf = info.get_buffer()
        if buf is not None and buf.pts != Gst.CLOCK_TIME_NONE:
            with self._lock:
                bisect.insort(self._input, buf.pts)
        return Gst.PadProbeReturn.OK

    def decoded(self, pts: int, index: int) -> None:
        """The frame ``index`` came out at ``pts`` (ns): count the inputs before it that never did."""
        with self._lock:
            done = bisect.bisect_right(self._input, pts + PTS_TOLERANCE)
            lost = bisect.bisect_left(self._input, pts - PTS_TOLERANCE, 0, done)
            del self._input[:done]
        if lost and self._last_decoded is not None:
            gap = Gap(index - 1, self._last_decoded / Gst.SECOND, pts / Gst.SECOND, lost)
            self.gaps.append(gap)
            log.info("%s: %s", self._text, gap.describe())
        self._last_decoded = pts

    def check(self) -> None:
        """Raise :class:`DamagedSourceError` naming the places where frames went missing, if any."""
        if self.gaps:
            total = sum(g.missing for g in self.gaps)
            where = "; ".join(g.describe() for g in self.gaps[:3]) + ("; ..." if len(self.gaps) > 3 else "")
            raise DamagedSourceError(
                f"{self._text}: {total} frame(s) could not be decoded, in {len(self.gaps)} place(s) "
                f"({where}): file damaged; every other frame was delivered",
                gaps=tuple(self.gaps),
            )


def check_length(info: SourceInfo, delivered: int, last_pts: float, other_ends: Iterable[float]) -> None:
    """A file's end: compare what was decoded with what the container promised. The video stream may end
    before the file does (a shorter second track, a longer audio track): only when no stream reached the
    container's end was the file cut off."""
    if not info.duration or not info.fps:
        return
    end = max([last_pts, *other_ends])
    missing = (info.duration - end) * info.fps - 1  # frame times not covered
    if missing > 2:
        raise TruncatedSourceError(
            f"{info.source}: stream ended after {delivered} frames at {last_pts:.2f} s of "
            f"{info.duration:.2f} s (about {round(missing)} frames missing: file truncated or damaged)",
            frames_decoded=delivered,
        )
