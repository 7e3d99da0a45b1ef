"""The element's properties mapped into the one configuration model (checked there, with the same words
as every other front door; named here as properties)."""

from __future__ import annotations

from pydantic import ValidationError

from ..errors import VidpipeError
from ..pipeline.config import ModelConfig, StreamConfig, config_error

PROPERTIES = {"name": "model", "batch": "batch-size"}  # the fields whose property is not FIELD-NAME


def property_name(field: str) -> str:
    """A configuration field as the element spells it: ``max_det`` → ``max-det``."""
    return PROPERTIES.get(field, field.replace("_", "-"))


def configs(props: dict) -> tuple[ModelConfig, StreamConfig]:
    """The model's and the stream's configuration from the element's properties; :class:`VidpipeError`
    ``vidpipe_detect: PROPERTY must be ...`` for a value that breaks its rule."""
    model = {
        "name": props["model"], "weights": props["weights"] or None, "backend": props["backend"],
        "device": props["device"], "precision": props["precision"],
        "threshold": None if props["threshold"] == -1 else props["threshold"],
        "classes": props["classes"] or None, "batch": props["batch-size"],
    }  # fmt: skip
    stream = {
        "track": props["track"],
        "lines": [x.strip() for x in props["lines"].split(";") if x.strip()],
        "zones": [z.strip() for z in props["zones"].split(";") if z.strip()],
    }
    try:
        return (
            ModelConfig.model_validate({k: v for k, v in model.items() if v is not None}),
            StreamConfig.model_validate(stream),
        )
    except ValidationError as exc:
        raise VidpipeError(f"vidpipe_detect: {config_error(exc, property_name)}") from None
