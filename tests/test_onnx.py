"""ONNX detectors: YOLOv8n and YOLOv5n built from their architecture definitions and exported to ONNX,
compared with an independent reference post-processing (written here from the YOLO papers' and
exporters' description, in numpy) on real frames of several aspect ratios; the letterbox against
OpenCV's; torchvision's SSDlite in ONNX against the same model in PyTorch; ``vidpipe export`` round trips."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torchvision
import yolo_nets
from conftest import run_on_small_disk, vidpipe_cli
from test_models import _both_ways, _matched
from torchvision.ops import box_iou

import vidpipe
from vidpipe import models
from vidpipe.errors import ModelError
from vidpipe.models.export import export_onnx
from vidpipe.models.labels import COCO_80
from vidpipe.models.onnx import letterbox, letterbox_geometry
from vidpipe.models.torchvision_models import TorchvisionStyleDetector
from vidpipe.types import Detections

pytest.importorskip("onnxruntime")

SIZES = {"native": (288, 384), "wide": (240, 640), "tall": (480, 240), "square": (320, 320), "odd": (241, 321)}
NAMES = {i: name for i, name in enumerate(COCO_80[1:])}


@pytest.fixture(scope="module")
def frames(sample) -> dict[str, torch.Tensor]:
    """Real frames of the bundled clip (with a person), scaled to several aspect ratios."""
    with vidpipe.open(sample) as src:
        picked = [f.tensor.clone() for f in src if f.index in (120, 250)]
    out = {}
    for k, (name, (h, w)) in enumerate(SIZES.items()):
        image = picked[k % 2].permute(2, 0, 1)[None].float()
        image = torch.nn.functional.interpolate(image, size=(h, w), mode="bilinear", align_corners=False)
        out[name] = image[0].round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous()
    return out


def _row(box: tuple[float, float, float, float], scores: dict[int, float], classes: int = 80, obj=None) -> list:
    row = [*box] + ([obj] if obj is not None else []) + [0.0] * classes
    offset = 5 if obj is not None else 4
    for c, s in scores.items():
        row[offset + c] = s
    return row


# Planted candidates (cx, cy, w, h in 640x640 input pixels): an overlapping pair of one class (the weaker
# is suppressed), the same box in another class (kept), one off to the side, one across the letterbox edge.
V8_ROWS = [
    (100, _row((320, 320, 100, 200), {0: 0.95})),
    (2000, _row((326, 330, 100, 200), {0: 0.90})),
    (3000, _row((326, 330, 100, 200), {2: 0.85})),
    (4000, _row((120, 500, 60, 60), {5: 0.60, 7: 0.55})),
    (6000, _row((600, 40, 120, 90), {1: 0.30})),
]
V5_ROWS = [
    (100, _row((320, 320, 100, 200), {0: 0.97}, obj=0.98)),
    (9000, _row((326, 330, 100, 200), {0: 0.93}, obj=0.96)),
    (12000, _row((326, 330, 100, 200), {2: 0.9}, obj=0.94)),
    (20000, _row((120, 500, 60, 60), {5: 0.7}, obj=0.9)),
    (25000, _row((600, 40, 120, 90), {1: 0.5}, obj=0.8)),
    (5000, _row((200, 200, 50, 50), {3: 0.4}, obj=0.5)),  # 0.5 x 0.4 = 0.2: below 0.25
    (6000, _row((400, 200, 50, 50), {4: 0.99}, obj=0.2)),  # objectness below 0.25
]


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("onnx")


@pytest.fixture(scope="module")
def calibration(frames) -> torch.Tensor:
    return torch.stack([letterbox(f, (640, 640)) for f in frames.values()])


@pytest.fixture(scope="module")
def yolov8(onnx_dir, calibration) -> Path:
    torch.manual_seed(8)
    net = yolo_nets.calibrate(yolo_nets.YOLOv8n(), calibration)
    planted = yolo_nets.Planted(net, V8_ROWS, "yolo", damp=0.4)
    return yolo_nets.export(planted, onnx_dir / "yolov8n.onnx", names=NAMES)


@pytest.fixture(scope="module")
def yolov5(onnx_dir, calibration) -> Path:
    torch.manual_seed(5)
    net = yolo_nets.calibrate(yolo_nets.YOLOv5n(), calibration)
    planted = yolo_nets.Planted(net, V5_ROWS, "yolov5", damp=1.0)
    return yolo_nets.export(planted, onnx_dir / "yolov5n.onnx", dynamic=False)  # no names: COCO's 80 by count


# -- the reference: written from the description of YOLO's inference, independently of vidpipe ----------


def reference_letterbox(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Ultralytics' LetterBox as documented: scale to fit, cv2.resize INTER_LINEAR, centre, pad 114."""
    h, w = frame.shape[:2]
    r = min(size[0] / h, size[1] / w)
    new_w, new_h = round(w * r), round(h * r)
    dw, dh = (size[1] - new_w) / 2, (size[0] - new_h) / 2
    if (new_w, new_h) != (w, h):
        frame = cv2.resize(frame, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    return cv2.copyMakeBorder(frame, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(114, 114, 114))


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    x1, y1 = np.maximum(box[0], others[:, 0]), np.maximum(box[1], others[:, 1])
    x2, y2 = np.minimum(box[2], others[:, 2]), np.minimum(box[3], others[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return inter / (area(box) + area(others) - inter)


def reference_postprocess(raw: np.ndarray, layout: str, frame_hw, input_hw, conf=0.25, iou=0.45, max_det=300):
    """One image's raw output → (boxes in frame pixels, scores, classes): confidence filter, cx,cy,w,h →
    corners, greedy NMS within each class (best first), max_det, then undo the letterbox and clip."""
    x = raw.T if layout == "yolo" else raw
    if layout == "yolov5":
        x = x[x[:, 4] > conf]
        cls = x[:, 5:] * x[:, 4:5]
    else:
        cls = x[:, 4:]
    score, cid = cls.max(1), cls.argmax(1)
    keep = score > conf
    x, score, cid = x[keep], score[keep], cid[keep]
    boxes = np.stack([x[:, 0] - x[:, 2] / 2, x[:, 1] - x[:, 3] / 2, x[:, 0] + x[:, 2] / 2, x[:, 1] + x[:, 3] / 2], 1)
    order = np.argsort(-score, kind="stable")
    kept: list[int] = []
    suppressed = np.zeros(len(order), bool)
    for rank, i in enumerate(order):
        if suppressed[rank]:
            continue
        kept.append(i)
        rest = order[rank + 1 :]
        same = cid[rest] == cid[i]
        overlap = _iou(boxes[i], boxes[rest]) > iou
        suppressed[rank + 1 :] |= same & overlap
        if len(kept) == max_det:
            break
    boxes, score, cid = boxes[kept], score[kept], cid[kept]
    (h, w), (ih, iw) = frame_hw, input_hw
    gain = min(ih / h, iw / w)
    pad_x, pad_y = round((iw - w * gain) / 2 - 0.1), round((ih - h * gain) / 2 - 0.1)
    boxes = (boxes - [pad_x, pad_y, pad_x, pad_y]) / gain
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
    return boxes, score, cid


def _same(found: Detections, ref: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    boxes, scores, classes = (torch.from_numpy(np.ascontiguousarray(a)) for a in ref)
    assert len(found) == len(boxes), (len(found), len(boxes))
    if not len(boxes):
        return
    ious = box_iou(found.boxes, boxes.float()).nan_to_num(0.0)
    # boxes clipped to nothing (random weights put some in the padding) have no IoU: compare corners
    close = (found.boxes[:, None] - boxes.float()[None]).abs().amax(-1) <= 1e-2
    for i in range(len(boxes)):  # every reference box has its twin: same class, IoU >= 0.99, score within 1e-4
        twins = ((ious[:, i] >= 0.99) | close[:, i]) & (found.class_ids == classes[i])
        twins &= (found.scores - scores[i]).abs() <= 1e-4
        assert twins.any(), f"reference box {i} ({boxes[i].tolist()}, class {int(classes[i])}) not found"


# -- tests ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SIZES)
def test_letterbox_matches_opencv(frames, name):
    frame = frames[name]
    ours = (letterbox(frame, (640, 640)) * 255).round().permute(1, 2, 0).numpy()
    theirs = reference_letterbox(frame.numpy(), (640, 640)).astype(np.float32)
    assert ours.shape == theirs.shape == (640, 640, 3)
    _, new_h, new_w, top, left = letterbox_geometry(*frame.shape[:2], (640, 640))
    pad = np.ones((640, 640), bool)
    pad[top : top + new_h, left : left + new_w] = False
    assert (ours[pad] == 114).all() and (theirs[pad] == 114).all()  # the same padding, exactly
    assert np.abs(ours - theirs).max() <= 2  # bilinear resize within OpenCV's fixed-point rounding


@pytest.mark.parametrize(("model", "layout"), [("yolov8", "yolo"), ("yolov5", "yolov5")])
def test_yolo_matches_the_reference_postprocessing(frames, model, layout, request):
    path = request.getfixturevalue(model)
    detector = models.load(str(path))
    assert detector.layout == layout and detector.classes[:3] == ["person", "bicycle", "car"]
    assert detector.torch_threads == 1  # on the CPU the cores go to ONNX Runtime's threads
    batch_frames = list(frames.values())
    batch = detector.preprocess(batch_frames)
    raw = detector.forward(batch)
    found = detector.postprocess(raw, batch)
    planted_found = 0
    for frame, detections, out in zip(batch_frames, found, raw.numpy(), strict=True):
        ref = reference_postprocess(out, layout, frame.shape[:2], (640, 640))
        print(f"{layout} {tuple(frame.shape[:2])}: {len(ref[0])} boxes, {len(set(ref[1].tolist()))} distinct scores")
        _same(detections, ref)
        planted_found += int((detections.scores > 0.5).sum())
        assert ((detections.boxes[:, [0, 2]] >= 0) & (detections.boxes[:, [0, 2]] <= frame.shape[1])).all()
    # the planted boxes: the overlapping same-class pair gave one box, the other class survived
    assert planted_found >= 3 * len(batch_frames)
    assert torch.equal(torch.cat([d.boxes for d in detector(batch_frames)]), torch.cat([d.boxes for d in found]))


def test_planted_boxes_land_where_the_letterbox_puts_them(yolov8, frames):
    detector = models.load(str(yolov8), threshold=0.8)
    frame = frames["wide"]  # 640x240 → gain 1.0, 200 rows of padding on top
    found = detector([frame])[0]
    assert found.labels == ["person", "car"]
    gain, _, _, top, left = letterbox_geometry(240, 640, (640, 640))
    expected = torch.tensor([320 - 50, 320 - 100, 320 + 50, 320 + 100], dtype=torch.float32)
    expected = (expected - torch.tensor([left, top, left, top])) / gain
    expected[[1, 3]] = expected[[1, 3]].clamp(0, 240)
    assert torch.allclose(found.boxes[0], expected, atol=1e-3)


def test_fixed_batch_model_runs_any_batch(yolov5, frames):
    detector = models.load(str(yolov5))
    assert not detector.dynamic_batch and "one by one" in detector.note
    four = [frames["native"]] * 4
    results = detector(four)
    assert len(results) == 4 and all(torch.equal(r.boxes, results[0].boxes) for r in results)


def test_end_to_end_layout(onnx_dir, frames):
    class EndToEnd(torch.nn.Module):
        def forward(self, x):
            rows = torch.zeros(x.shape[0], 300, 6)
            rows[:, 0] = torch.tensor([100.0, 200.0, 300.0, 400.0, 0.9, 2.0])
            rows[:, 1] = torch.tensor([10.0, 10.0, 50.0, 50.0, 0.2, 1.0])  # below the threshold
            return rows + 0 * x.mean()

    path = yolo_nets.export(EndToEnd(), onnx_dir / "e2e.onnx")
    detector = models.load(str(path))
    assert detector.layout == "end2end"
    found = detector([frames["square"]])[0]  # 320x320 → gain 2, no padding
    assert found.labels == ["car"] and torch.allclose(found.boxes[0], torch.tensor([50.0, 100.0, 150.0, 200.0]))


def _calibrated_ssdlite() -> torch.nn.Module:
    """torchvision's SSDlite320 with random weights (fixed seed), its batch norms calibrated on real
    frames so that scores differ from box to box (untrained, they tie and the order is arbitrary)."""
    torch.manual_seed(3)
    model = torchvision.models.get_model(
        "ssdlite320_mobilenet_v3_large", weights=None, weights_backbone=None, num_classes=91
    )
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None
    with vidpipe.open(Path(__file__).resolve().parent.parent / "media" / "sample.mp4") as src:
        images = [f.tensor.permute(2, 0, 1).float() / 255 for f in src if f.index % 40 == 0]
    model.train()
    with torch.no_grad():
        model.backbone(model.transform(images[:8])[0].tensors)
    return model.eval()


def test_torchvision_style_onnx_matches_pytorch(onnx_dir, frames):
    reference = TorchvisionStyleDetector(_calibrated_ssdlite(), name="ssdlite", threshold=0.01)
    path = onnx_dir / "ssdlite.onnx"
    export_onnx(reference, path)
    detector = models.load(str(path), threshold=0.01)
    assert detector.layout == "torchvision"
    for frame in frames.values():
        ours, theirs = detector([frame])[0], reference([frame])[0]
        assert len(ours) == len(theirs) > 50
        matched, total = _matched(theirs, ours, iou=0.99, score=1e-4)
        assert matched == total


def test_export_cli_for_a_torchvision_builder_with_weights(onnx_dir, frames):
    weights = onnx_dir / "ssdlite.pth"
    torch.save(_calibrated_ssdlite().state_dict(), weights)
    path = onnx_dir / "ssdlite-cli.onnx"
    result = vidpipe_cli(
        "export", "--model", "torchvision:ssdlite320_mobilenet_v3_large", "--weights", str(weights), str(path)
    )
    assert result.returncode == 0, result.stderr
    reference = models.load("torchvision:ssdlite320_mobilenet_v3_large", weights=str(weights), threshold=0.01)
    exported = models.load(str(path), threshold=0.01)
    ours, theirs = exported([frames["odd"]])[0], reference([frames["odd"]])[0]
    assert len(ours) == len(theirs) > 50 and _matched(theirs, ours, iou=0.99, score=1e-4) == (len(theirs),) * 2
    result = vidpipe_cli("export", "--model", "ssd_mobilenet_v2_coco", str(onnx_dir / "model.pt"))
    assert result.returncode == 2 and "needs a name ending in .onnx" in result.stderr


def test_export_round_trip_agrees_with_the_built_in_model(footage_frames, tmp_path):
    path = tmp_path / "ssd_mobilenet_v2.onnx"
    result = vidpipe_cli("export", "--model", "ssd_mobilenet_v2_coco", "--format", "onnx", str(path))
    assert result.returncode == 0, result.stderr
    assert str(path) in result.stderr
    built_in = models.load("ssd_mobilenet_v2_coco", threshold=0.47)
    exported = models.load(str(path), threshold=0.47)
    assert exported.layout == "torchvision" and exported.classes == built_in.classes
    forward, backward = _both_ways(built_in(footage_frames), exported(footage_frames), floor=0.5, iou=0.9, score=0.03)
    print(f"built-in→ONNX {forward[0]}/{forward[1]}, ONNX→built-in {backward[0]}/{backward[1]}")
    assert forward[1] >= 20 and backward[1] >= 20
    assert forward[0] / forward[1] >= 0.98 and backward[0] / backward[1] >= 0.98


@pytest.fixture(scope="module")
def footage_frames(sample):
    with vidpipe.open(sample) as src:
        picked = [f.tensor.clone() for f in src if f.index % 30 == 0]
    big = torch.nn.functional.interpolate(picked[8].permute(2, 0, 1)[None].float(), size=(1080, 1440))
    return [*picked, big[0].round().to(torch.uint8).permute(1, 2, 0).contiguous()]  # and one of another size


def test_detect_cli_runs_a_yolo_onnx_model(yolov8, sample, tmp_path):
    jsonl = tmp_path / "y.jsonl"
    result = vidpipe_cli("detect", str(sample), "--model", str(yolov8), "--max-frames", "8", "--json", str(jsonl))
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in jsonl.read_text().splitlines() if '"frame"' in line]
    assert len(lines) == 8
    assert {"person", "car"} <= {d["label"] for line in lines for d in line["detections"]}


def test_names_files(yolov8, tmp_path):
    listed = tmp_path / "names.txt"
    listed.write_text("\n".join(f"thing{i}" for i in range(80)))
    assert models.load(str(yolov8), names=listed).classes[5] == "thing5"
    mapping = tmp_path / "names.yaml"
    mapping.write_text("names:\n" + "".join(f"  {i}: obj{i}\n" for i in range(80)))
    assert models.load(str(yolov8), names=mapping).classes[79] == "obj79"
    as_json = tmp_path / "names.json"
    as_json.write_text(json.dumps([f"j{i}" for i in range(80)]))
    assert models.load(str(yolov8), names=as_json).classes[0] == "j0"
    short = tmp_path / "short.txt"
    short.write_text("a\nb\n")
    with pytest.raises(ModelError, match=r"has 2 names, .* has 80 classes"):
        models.load(str(yolov8), names=short)


def test_class_names_fall_back_to_class_n(onnx_dir):
    torch.manual_seed(1)
    path = yolo_nets.export(yolo_nets.YOLOv8n(nc=3), onnx_dir / "three.onnx", size=(320, 320))
    assert models.load(str(path)).classes == ["class_0", "class_1", "class_2"]


@pytest.mark.parametrize("case", ["text", "missing", "layout", "input"])
def test_bad_onnx_models_give_one_clear_error(case, onnx_dir, sample):
    path = onnx_dir / f"bad-{case}.onnx"
    if case == "text":
        path.write_text("not a model\n")
        expected = "not a loadable ONNX model"
    elif case == "missing":
        path = onnx_dir / "nowhere.onnx"
        expected = "no such ONNX file"
    elif case == "layout":
        net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
        yolo_nets.export(net, path, size=(64, 64))
        expected = "unknown output layout (output shapes [[1, 4]])"
    else:
        yolo_nets.export(torch.nn.Linear(10, 84), path, size=(10,))
        expected = "input is not an image tensor"
    result = vidpipe_cli("detect", str(sample), "--model", str(path), "--max-frames", "2")
    assert result.returncode == 2 and expected in result.stderr and "Traceback" not in result.stderr
    assert str(path) in result.stderr


def test_onnx_options_are_refused_for_other_models(sample):
    result = vidpipe_cli("detect", str(sample), "--names", "x.txt", "--max-frames", "2")
    assert result.returncode == 2 and "--names is for ONNX models" in result.stderr


def test_a_yolo_checkpoint_points_to_the_onnx_export(tmp_path, sample):
    checkpoint = tmp_path / "yolov8n.pt"
    torch.save({"model": "an Ultralytics checkpoint is a pickle, not TorchScript"}, checkpoint)
    result = vidpipe_cli("detect", str(sample), "--model", str(checkpoint), "--max-frames", "2")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "yolo export model=yolov8n.pt format=onnx" in result.stderr and "--model yolov8n.onnx" in result.stderr


def test_export_to_a_full_disk_leaves_no_partial_file(tmp_path):
    import sys

    small, listing = tmp_path / "small", tmp_path / "listing.txt"
    exe = Path(sys.executable).with_name("vidpipe")
    command = (
        f"{exe} export --model ssd_mobilenet_v2_coco {small}/model.onnx; rc=$?; ls -A {small} > {listing}; exit $rc"
    )
    result = run_on_small_disk(small, "64k", command)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "model.onnx: cannot write (No space left on device)" in result.stderr
    assert listing.read_text() == ""
