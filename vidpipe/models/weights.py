"""Loading weights files shared by the detectors, with one clear error for each way they can be wrong."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import ModelError, WeightsError


def check_file(path: str | Path, what: str, error: type[ModelError] = WeightsError) -> Path:
    """``path`` when it is a file with something in it; else ``error`` naming it and why not (missing, a
    folder, empty), before any loader turns the cause into a riddle (a folder is no "pickle" error)."""
    path = Path(path)
    if path.is_dir():
        raise error(f"{path}: is a folder, not a file (the {what})")
    if not path.is_file():
        raise error(f"{path}: no such {what}")
    if path.stat().st_size == 0:
        raise error(f"{path}: the {what} is empty (0 bytes)")
    return path


def load_torch_state(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a ``torch.save`` file: a bare state dict or a checkpoint's ``"model"`` entry,
    ``module.`` prefixes (DataParallel) stripped; :class:`WeightsError` when it is neither."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"{path}: not a readable PyTorch weights file ({type(exc).__name__})") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path}: does not hold a state dict")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_matching(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict`` that turns key or shape mismatches into one clear :class:`WeightsError`."""
    own = model.state_dict()
    missing = sorted(k for k in set(own) - set(state) if not k.endswith("num_batches_tracked"))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        details = []
        for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if keys:
                details.append(f"{len(keys)} {what} (e.g. {keys[0]})")
        raise WeightsError(f"{source}: weights made for another architecture: {', '.join(details)}")
    model.load_state_dict(state, strict=False)
