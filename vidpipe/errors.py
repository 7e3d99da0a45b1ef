"""The vidpipe exception hierarchy.

Every error vidpipe raises on purpose derives from :class:`VidpipeError`; its message names the input and
the cause, so the CLI prints it as one line. GLib/GStreamer errors are translated where they enter.
"""

from __future__ import annotations

from .redact import mask_secrets


class VidpipeError(Exception):
    """Base class of every error vidpipe raises on purpose. Its message never shows a URL's password;
    the fields of every subclass survive ``pickle`` (errors cross process boundaries)."""

    exit_code = 2

    def __init__(self, message: str = "", *args: object) -> None:
        super().__init__(mask_secrets(str(message)), *args)

    def __reduce__(self):
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(cls: type, args: tuple, state: dict) -> VidpipeError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class ConfigError(VidpipeError):
    """A configuration that cannot be used: ``problems`` holds one line per problem (each masked)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = [mask_secrets(line) for line in problems]
        super().__init__("\n".join(self.problems))


class SourceError(VidpipeError):
    """A video source cannot be opened or read."""


class SourceNotFoundError(SourceError):
    """The file does not exist (or is a directory)."""


class NotAVideoError(SourceError):
    """The input is not a media file GStreamer can read (empty, text, unknown format)."""


class NoVideoStreamError(SourceError):
    """The media holds no video stream (for example audio only)."""


class MissingDecoderError(SourceError):
    """No GStreamer element is installed that decodes this codec."""

    def __init__(self, message: str, *, codec: str | None = None, package: str | None = None) -> None:
        super().__init__(message)
        self.codec = codec
        self.package = package


class UnsupportedSourceError(SourceError):
    """The source string has a scheme or form vidpipe does not know."""


class StreamUnreachableError(SourceError):
    """A network stream or device cannot be reached."""


class TruncatedSourceError(SourceError):
    """The media ends before what its container promised (damaged or cut-off file).

    ``frames_decoded`` tells how many frames were delivered before the damage.
    """

    def __init__(self, message: str, *, frames_decoded: int = 0) -> None:
        super().__init__(message)
        self.frames_decoded = frames_decoded


class DamagedSourceError(SourceError):
    """Frames went into the decoder but never came out (damaged data): they are missing inside the file.

    Raised at the end of the stream, after every decodable frame was delivered; ``gaps`` lists where.
    """

    def __init__(self, message: str, *, gaps: tuple = ()) -> None:
        super().__init__(message)
        self.gaps = gaps


class SourceOutOfResourcesError(SourceError):
    """The process cannot open another source (for example: too many open files)."""


class OpenCancelledError(SourceError):
    """Opening a source was given up because the run was stopped (Ctrl-C, SIGTERM) meanwhile."""


class DecodeError(SourceError):
    """GStreamer reported an error while decoding."""


class ModelError(VidpipeError):
    """A detector cannot be built or its weights cannot be loaded."""


class UnknownModelError(ModelError):
    """The model name is not known."""


class WeightsError(ModelError):
    """A weights file is missing, corrupt, or made for another architecture."""


class FrameInputError(VidpipeError, ValueError):
    """Frames handed to a detector are not what it takes (a list of ``uint8[H, W, 3]`` RGB images)."""


class OutputError(VidpipeError):
    """An output (JSONL, video, graph) cannot be written."""


class StreamsFailedError(VidpipeError):
    """Some streams of a run failed (the others finished); ``errors`` maps each stream to its error."""

    def __init__(self, errors: dict[str, BaseException]) -> None:
        self.errors = errors
        lines = [f"stream {name}: {error}" for name, error in errors.items()]
        super().__init__(f"{len(errors)} stream(s) failed: " + "; ".join(lines))
