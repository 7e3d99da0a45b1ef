"""The rule of each kind of option value, in one place: every front door (CLI flags, the service's YAML
and API bodies, the element's properties, Python keywords, the cluster's messages) checks a value with
the same rule and says the same words, prefixed with the option's name as that front door spells it.

Each rule returns the value normalised (an ``int``, a ``float``) or raises :class:`RuleError` whose text
is what is wrong (``must be a number above 0, got -1``); :func:`checked` names the option for Python.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

from .errors import VidpipeError


class RuleError(ValueError):
    """A value that breaks its option's rule; the text says how (without the option's name)."""


def shown(value: object) -> str:
    """A value as the user wrote it: numbers without a trailing ``.0`` (``-1``, ``1.5``), text quoted."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return repr(value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _number(value: object) -> float | None:
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def positive_number(value: object) -> float:
    """A finite number above 0 (a rate, a time in seconds)."""
    number = _number(value)
    if number is None or not math.isfinite(number) or number <= 0:
        raise RuleError(f"must be a number above 0, got {shown(value)}")
    return number


MIN_FPS = 1 / 10_000  # the lowest frame rate a rate limit takes: one frame in 10,000 s (under 3 hours)


def frame_rate(value: object) -> float:
    """A frame rate limit: a finite number of frames per second of at least :data:`MIN_FPS` (below it, no
    frame of a day-long stream would ever pass: a typo, not a wish)."""
    number = positive_number(value)
    if number < MIN_FPS:
        raise RuleError(f"must be at least {MIN_FPS:g} (one frame in {1 / MIN_FPS:,.0f} s), got {shown(value)}")
    return number


def time_point(value: object) -> float:
    """A finite number of seconds of 0 or more (a moment into a file)."""
    number = _number(value)
    if number is None or not math.isfinite(number) or number < 0:
        raise RuleError(f"must be a number of seconds of 0 or more, got {shown(value)}")
    return number


def count(value: object) -> int:
    """A whole number of at least 1 (a batch size, a number of frames)."""
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RuleError(f"must be at least 1, got {shown(value)}")
    return value


def fraction(value: object) -> float:
    """A number from 0 to 1 (a score threshold)."""
    number = _number(value)
    if number is None or not 0.0 <= number <= 1.0:
        raise RuleError(f"must be a number from 0 to 1, got {shown(value)}")
    return number


def overlap(value: object) -> float:
    """A number above 0 and at most 1 (the IoU above which non-maximum suppression merges boxes)."""
    number = _number(value)
    if number is None or not 0.0 < number <= 1.0:
        raise RuleError(f"must be a number above 0 and at most 1, got {shown(value)}")
    return number


def pixels(low: int, high: int) -> Callable[[object], int]:
    """A whole number of pixels from ``low`` to ``high``."""

    def rule(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise RuleError(f"must be {low} to {high} pixels, got {shown(value)}")
        return value

    return rule


MAX_SIDE = 8192  # a scaled frame's largest width and height (8K; beyond, one frame eats gigabytes)


def frame_size(value: object) -> tuple[int, int]:
    """A frame size to scale to: ``(width, height)`` or ``"WIDTHxHEIGHT"``, each 1 to :data:`MAX_SIDE`."""
    parts = value.lower().split("x") if isinstance(value, str) else value
    try:
        width, height = (int(part) if isinstance(part, str) else part for part in parts)
    except (TypeError, ValueError):
        width = height = None
    if not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_SIDE for v in (width, height)):
        raise RuleError(f"must be WIDTHxHEIGHT, each 1 to {MAX_SIDE} pixels, got {shown(value)}")
    return width, height


def class_names(value: object) -> list[str] | None:
    """Labels to keep: a comma-separated text (``person,car``) or a list; at least one name."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value) if isinstance(value, Iterable) else None
    if items is None or not all(isinstance(item, str) for item in items):
        raise RuleError(f"must be label names (e.g. person,car), got {shown(value)}")
    names = [item.strip() for item in items if item.strip()]
    if not names:
        raise RuleError(f"no class name given in {shown(value)} (expected e.g. person,car)")
    return names


def checked(name: str, rule: Callable[[object], object], value: object) -> object:
    """``rule(value)``, or :class:`VidpipeError` ``NAME must be ...`` (for Python callers)."""
    try:
        return rule(value)
    except RuleError as exc:
        raise VidpipeError(f"{name} {exc}") from None
