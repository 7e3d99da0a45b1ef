"""Help with a configuration's mistakes: "did you mean" for an unknown key (the names and aliases the
model takes at that place, compared with difflib) and, for a value of the wrong shape, what the place
expects (``record: true`` → the mapping ``record`` takes)."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any

from pydantic import BaseModel

# keys people bring from other tools: no spelling is near, the meaning is
SYNONYMS = {
    "cameras": "streams",
    "camera": "streams",
    "sources": "streams",
    "topic_prefix": "prefix",
    "topic": "prefix",
    "broker": "host",
    "url": "uri",
    "source": "uri",
    "fps": "detect_fps",
    "recording": "record",
    "detector": "model",
    "user": "username",
}


def _unwrap(annotation: Any) -> Any:
    """The type inside ``Annotated[...]`` and ``X | None``."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _keys(model: type[BaseModel]) -> dict[str, str]:
    """Every key the model takes, name and alias, to the name shown."""
    keys = {}
    for name, info in model.model_fields.items():
        shown = info.alias or name
        keys[name] = shown
        if info.alias:
            keys[info.alias] = shown
    return keys


def _at(model: type[BaseModel], loc: tuple) -> Any:
    """The type at ``loc`` below ``model`` (None when the path leaves the model)."""
    here: Any = model
    for part in loc:
        here = _unwrap(here)
        if _is_model(here):
            keys = {n: n for n in here.model_fields}
            keys.update({i.alias: n for n, i in here.model_fields.items() if i.alias})
            if part not in keys:
                return None
            here = here.model_fields[keys[part]].annotation
        elif typing.get_origin(here) is dict:
            here = typing.get_args(here)[1]
        elif typing.get_origin(here) is list:
            here = typing.get_args(here)[0]
        else:
            return None
    return _unwrap(here)


def _example(model: type[BaseModel]) -> str:
    parts = []
    for name, info in model.model_fields.items():
        key = info.alias or name
        value = _unwrap(info.annotation)
        parts.append(f"{key}: true" if value is bool else key)
    return "{" + ", ".join(parts) + "}"


def hint(model: type[BaseModel], loc: tuple, kind: str) -> str:
    """A hint for the problem of pydantic type ``kind`` at ``loc`` ('' when there is none to give)."""
    if kind == "extra_forbidden" and loc:
        parent = _at(model, loc[:-1])
        if not _is_model(parent):
            return ""
        key, keys = str(loc[-1]), _keys(parent)
        if SYNONYMS.get(key) in keys:
            return f"did you mean {keys[SYNONYMS[key]]!r}?"
        close = difflib.get_close_matches(key, list(keys), n=1, cutoff=0.6)
        if close:
            return f"did you mean {keys[close[0]]!r}?"
        return "known keys here: " + ", ".join(sorted(set(keys.values())))
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        expected = _at(model, loc)
        if _is_model(expected):
            return f"expected a mapping such as {_example(expected)}"
    return ""
