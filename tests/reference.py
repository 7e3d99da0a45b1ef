"""The reference detections: OpenCV DNN (fp32) on the same TensorFlow graph vidpipe converts, on the same
decoded frames. Needs OpenCV's TensorFlow importer, which opencv-python 5 removed: the test extra asks
for ``opencv-python<5`` and the lock installs a 4.x."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidpipe.models.detections import Detections
from vidpipe.models.ssd_mobilenet_v2 import bundled_graph


def opencv_net():
    """OpenCV DNN's network read from the bundled graph (fails the test with the fix when it cannot)."""
    import cv2

    if not hasattr(cv2.dnn, "readNetFromTensorflow"):
        pytest.fail(
            f"the reference needs OpenCV's TensorFlow importer, which opencv-python {cv2.__version__} removed: "
            "pip install 'opencv-python<5' (make test installs the locked 4.x)"
        )
    graph = bundled_graph()
    return cv2.dnn.readNetFromTensorflow(str(graph), str(graph.with_name("ssd_mobilenet_v2_coco_2018_03_29.pbtxt")))


def opencv_detections(frames, threshold: float) -> list[Detections]:
    """The reference's detections of at least ``threshold`` in ``uint8[H, W, 3]`` RGB frames, in pixels."""
    import cv2

    net = opencv_net()
    results = []
    for frame in frames:
        pixels = frame.numpy() if isinstance(frame, torch.Tensor) else frame
        h, w = pixels.shape[:2]
        net.setInput(cv2.dnn.blobFromImage(pixels, 1.0, (300, 300), swapRB=False, crop=False))
        out = net.forward()[0, 0]
        out = out[out[:, 2] >= threshold]
        boxes = torch.from_numpy(np.clip(out[:, 3:7], 0, 1) * [w, h, w, h]).float()  # TF clips to the image
        ids = torch.from_numpy(out[:, 1].astype(np.int64))
        results.append(Detections(boxes, torch.from_numpy(out[:, 2]).float(), ids, [""] * len(ids)))
    return results
