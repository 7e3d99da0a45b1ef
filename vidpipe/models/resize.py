"""The model's input, made one way for every front door and output: whole RGB frames resized on their
uint8 pixels as the reference (OpenCV DNN's ``blobFromImage``) does; see docs/models.md."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def stack_resized(frames: Sequence[torch.Tensor], size: tuple[int, int], device: torch.device) -> torch.Tensor:
    """The model's input, made one way for every caller: ``uint8[H, W, 3]`` RGB frames (any sizes) resized
    to ``size=(h, w)``, bilinear with half-pixel centres and no antialiasing, on their uint8 pixels (as
    ``cv2.dnn.blobFromImage``, the reference, does); float ``[N, 3, h, w]`` in 0..255, contiguous. Frames
    of equal size are resized as one batch. (On CUDA, whose resize takes no uint8, in float, rounded.)"""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, frame in enumerate(frames):
        groups.setdefault(tuple(frame.shape), []).append(i)
    parts = [_resize(_stacked([frames[i] for i in group], device), size) for group in groups.values()]
    if len(parts) == 1:
        return parts[0]
    order = torch.tensor([i for group in groups.values() for i in group], device=device)
    return torch.cat(parts).index_select(0, torch.argsort(order))


def _stacked(frames: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    """``uint8[N, 3, H, W]`` (channels-last in memory) on ``device``."""
    if device.type == "cuda":  # one upload of the uint8 batch, from pinned memory, asynchronous
        staged = torch.empty((len(frames), *frames[0].shape), dtype=torch.uint8, pin_memory=True)
        images = torch.stack(frames, out=staged).to(device, non_blocking=True)
    else:
        images = torch.stack(frames)
    return images.permute(0, 3, 1, 2)


def _resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 ``[N, 3, H, W]`` → float ``[N, 3, h, w]`` in 0..255, contiguous."""
    if tuple(images.shape[-2:]) != size:
        if images.device.type == "cpu":
            images = torch.nn.functional.interpolate(images, size=size, mode="bilinear", align_corners=False)
        else:
            images = torch.nn.functional.interpolate(
                images.float(), size=size, mode="bilinear", align_corners=False
            ).round_()
    return images.contiguous().float()
