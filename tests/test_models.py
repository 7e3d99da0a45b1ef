"""Detectors: the default SSD-MobileNetV2 against OpenCV DNN, SSD300, torchvision and user models, errors."""

from __future__ import annotations

import pytest
import torch
import torchvision
from conftest import vidpipe_cli
from reference import opencv_detections
from torchvision.ops import box_iou

import vidpipe
from vidpipe import errors, models
from vidpipe.models.detections import Detections
from vidpipe.models.ssd300 import SSD300, SSD300Detector
from vidpipe.models.ssd_mobilenet_v2 import tf_anchors


@pytest.fixture(scope="module")
def detector():
    return models.load("ssd_mobilenet_v2_coco")


@pytest.fixture(scope="module")
def footage(sample):
    """Every 15th frame of the bundled clip: 104 frames of real footage."""
    with vidpipe.open(sample) as src:
        return [f.tensor for f in src if f.index % 15 == 0]


def _matched(a: Detections, b: Detections, *, iou: float, score: float) -> tuple[int, int]:
    """How many of ``a``'s detections have a partner in ``b``: same class, IoU >= iou, |Δscore| <= score."""
    if len(a) == 0:
        return 0, 0
    if len(b) == 0:
        return 0, len(a)
    ious = box_iou(a.boxes, b.boxes)
    ok = (
        (ious >= iou)
        & (a.class_ids[:, None] == b.class_ids[None])
        & ((a.scores[:, None] - b.scores[None]).abs() <= score)
    )
    return int(ok.any(1).sum()), len(a)


def _both_ways(
    ours: list[Detections], theirs: list[Detections], *, floor: float, iou: float, score: float
) -> tuple[tuple[int, int], tuple[int, int]]:
    """(matched, of) for ``ours``' detections >= ``floor`` found in ``theirs``, and the other way round."""
    forward = backward = (0, 0)
    for a, b in zip(ours, theirs, strict=True):
        m, n = _matched(a[a.scores >= floor], b, iou=iou, score=score)
        forward = (forward[0] + m, forward[1] + n)
        m, n = _matched(b[b.scores >= floor], a, iou=iou, score=score)
        backward = (backward[0] + m, backward[1] + n)
    return forward, backward


def test_ssd_mobilenet_v2_agrees_with_opencv_dnn(footage):
    assert len(footage) >= 50
    # Candidates down to 0.47 on both sides, so that a score of 0.50 vs 0.49 (within the 0.03 allowed)
    # is not counted as a miss; detections >= 0.5 are the ones that must be matched.
    ours = models.load("ssd_mobilenet_v2_coco", threshold=0.47)(footage)
    theirs = opencv_detections(footage, 0.47)
    forward = backward = (0, 0)
    for mine, ref in zip(ours, theirs, strict=True):
        m, n = _matched(ref[ref.scores >= 0.5], mine, iou=0.9, score=0.03)
        forward = (forward[0] + m, forward[1] + n)
        m, n = _matched(mine[mine.scores >= 0.5], ref, iou=0.9, score=0.03)
        backward = (backward[0] + m, backward[1] + n)
    print(f"OpenCV→vidpipe {forward[0]}/{forward[1]}, vidpipe→OpenCV {backward[0]}/{backward[1]}")
    assert forward[1] >= 50 and backward[1] >= 50, "too few detections to compare"
    assert forward[0] / forward[1] >= 0.98
    assert backward[0] / backward[1] >= 0.98


def test_anchor_layout_matches_the_graph():
    anchors = tf_anchors()
    assert anchors.shape == (1917, 4)
    # OpenCV's description of the same graph: first layer heights 30, 42.43, 84.85 px at 300 px.
    first = anchors[:3, 3] * 300
    assert torch.allclose(first, torch.tensor([30.0, 42.4264, 84.8528]), atol=1e-3)
    assert torch.allclose(anchors[0, :2], torch.tensor([0.5 / 19, 0.5 / 19]))


def test_detections_in_frame_pixels_for_any_size(detector, footage):
    frame = footage[20]
    small = torch.nn.functional.interpolate(frame.permute(2, 0, 1)[None].float(), size=(145, 193)).round()
    small = small[0].permute(1, 2, 0).to(torch.uint8).contiguous()
    big, little = detector([frame, small])
    assert len(big) > 0 and len(little) > 0
    assert big.labels[0] == little.labels[0] == "person"
    scale = torch.tensor([193 / 384, 145 / 288, 193 / 384, 145 / 288])
    assert box_iou(big.boxes[:1] * scale, little.boxes[:1])[0, 0] > 0.8
    for found, (h, w) in ((big, (288, 384)), (little, (145, 193))):
        assert (found.boxes[:, 0] >= 0).all() and (found.boxes[:, 2] <= w).all()
        assert (found.boxes[:, 1] >= 0).all() and (found.boxes[:, 3] <= h).all()
        assert (found.scores >= 0.5).all()
        assert found.labels == [detector.classes[i] for i in found.class_ids.tolist()]
    record = big.to_dict()[0]
    assert set(record) == {"label", "class_id", "score", "box"} and len(record["box"]) == 4


def test_stages_compose_to_call(detector, footage):
    batch = detector.preprocess(footage[:3])
    staged = detector.postprocess(detector.forward(batch), batch)
    direct = detector(footage[:3])
    for a, b in zip(staged, direct, strict=True):
        assert torch.equal(a.boxes, b.boxes) and a.labels == b.labels


def test_torch_threads_hold_while_the_detector_runs(sample, footage, monkeypatch):
    """A detector with ``torch_threads`` (as the OpenVINO and ONNX Runtime ones set) runs its pre- and
    post-processing with that many PyTorch threads, called directly or in a pipeline, and leaves the
    caller's setting as it was; without it, PyTorch's setting is untouched."""
    det = models.load("ssd_mobilenet_v2_coco")
    before = torch.get_num_threads()
    seen: list[int] = []
    for stage in ("preprocess", "postprocess"):
        original = getattr(det, stage)
        monkeypatch.setattr(det, stage, lambda *a, f=original: (seen.append(torch.get_num_threads()), f(*a))[1])
    det(footage[:2])
    assert seen == [before, before]
    det.torch_threads, seen[:] = 1, []
    det(footage[:2])
    assert seen == [1, 1] and torch.get_num_threads() == before
    seen.clear()
    stats = vidpipe.Pipeline(sample, det, max_frames=8, batch=4).run()
    assert stats.frames == 8 and seen == [1] * 4 and torch.get_num_threads() == before


def test_converted_weights_are_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDPIPE_CACHE", str(tmp_path))
    models.load("ssd_mobilenet_v2_coco")
    cached = list(tmp_path.glob("ssd_mobilenet_v2_coco-*.pt"))
    assert len(cached) == 1 and cached[0].stat().st_size > 60_000_000


def test_bf16_agrees_with_fp32(footage):
    """bf16 on the CPU: every fp32 detection with score >= 0.6 has a bf16 partner with the same label,
    IoU >= 0.85 and |Δscore| <= 0.08 (bf16 keeps 8 bits of mantissa)."""
    frames = footage[::4]
    fp32 = models.load("ssd_mobilenet_v2_coco", threshold=0.3)(frames)
    bf16 = models.load("ssd_mobilenet_v2_coco", precision="bf16", threshold=0.3)(frames)
    matched = total = 0
    for a, b in zip(fp32, bf16, strict=True):
        m, n = _matched(a[a.scores >= 0.6], b, iou=0.85, score=0.08)
        matched, total = matched + m, total + n
    assert total >= 10 and matched == total


def test_ssd300_decodes_planted_boxes():
    det = SSD300Detector(random_weights=True)
    n = det.anchors.shape[0]
    assert n == 8732
    locs = torch.zeros(1, 4, n)
    confs = torch.full((1, 81, n), -10.0)
    confs[:, 0] = 10.0  # background everywhere…
    planted = {100: 1, 6000: 3, 8731: 17}  # …but three default boxes with a class
    for index, cls in planted.items():
        confs[0, 0, index], confs[0, cls, index] = -10.0, 10.0
    locs[0, :, 6000] = torch.tensor([5.0, -5.0, 0.0, 0.0])  # shift by half a box: x + 0.5 w, y - 0.5 h
    batch = det.preprocess([torch.zeros(300, 300, 3, dtype=torch.uint8)])
    found = det.postprocess((locs, confs), batch)[0]
    assert sorted(found.class_ids.tolist()) == sorted(planted.values())
    for index, cls in planted.items():
        cx, cy, w, h = det.anchors[index].tolist()
        if index == 6000:
            cx, cy = cx + 0.5 * w, cy - 0.5 * h
        expected = torch.tensor([[cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]]).clamp(0, 1) * 300
        got = found.boxes[found.class_ids == cls]
        assert torch.allclose(got, expected, atol=1e-3), (index, got, expected)
    assert found.labels[found.class_ids.tolist().index(1)] == "person"


def test_ssd300_loads_the_published_checkpoint_layout(tmp_path):
    net = SSD300().eval()
    state = {f"module.{k}": v for k, v in net.state_dict().items()}
    assert "module.feature_extractor.feature_extractor.0.weight" in state
    assert "module.additional_blocks.0.0.weight" in state and "module.conf.5.bias" in state
    path = tmp_path / "nvidia_ssdpyt_fp32.pt"
    torch.save({"model": state, "epoch": 65}, path)
    det = models.load("ssd300", weights=str(path), channels_last=False)
    x = torch.randn(1, 3, 300, 300)
    with torch.inference_mode():
        assert torch.allclose(det.model(x)[0], net(x)[0], atol=1e-4)


def test_ssd300_without_weights_refuses():
    with pytest.raises(errors.WeightsError, match="--weights"):
        models.load("ssd300")


def _random_torchvision_weights(path):
    net = torchvision.models.get_model(
        "ssdlite320_mobilenet_v3_large", weights=None, weights_backbone=None, num_classes=91
    )
    torch.save(net.state_dict(), path)
    return net


def test_torchvision_detector_with_weights_file(tmp_path, footage):
    path = tmp_path / "ssdlite.pth"
    _random_torchvision_weights(path)
    det = models.load("torchvision:ssdlite320_mobilenet_v3_large", weights=str(path), threshold=0.0)
    found = det(footage[:2])
    assert len(found) == 2 and all(isinstance(f, Detections) for f in found)
    assert len(found[0]) > 0 and (found[0].boxes[:, 2] <= 384).all()


def test_torchvision_offline_names_the_expected_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):  # nothing listens there: offline
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    with pytest.raises(errors.WeightsError) as info:
        models.load("torchvision:ssdlite320_mobilenet_v3_large")
    message = str(info.value)
    assert "ssdlite320_mobilenet_v3_large_coco-a79551df.pth" in message
    assert str(tmp_path / "hub" / "checkpoints") in message


def test_torchscript_user_model(tmp_path, footage):
    net = _random_torchvision_weights(tmp_path / "w.pth").eval()
    path = tmp_path / "detector.pt"
    torch.jit.script(net).save(str(path))
    det = models.load(str(path), threshold=0.0)
    found = det(footage[:1])[0]
    assert len(found) > 0 and found.labels[0] in det.classes


def test_python_factory_user_model(tmp_path, footage):
    weights = tmp_path / "ssdlite.pth"
    _random_torchvision_weights(weights)
    module = tmp_path / "my_detector.py"
    module.write_text(
        "import torch, torchvision\n\n"
        "def build(weights=None):\n"
        "    net = torchvision.models.get_model('ssdlite320_mobilenet_v3_large', weights=None,\n"
        "                                       weights_backbone=None, num_classes=91)\n"
        "    net.load_state_dict(torch.load(weights, weights_only=True))\n"
        "    net.classes = ['background'] + [f'thing{i}' for i in range(1, 91)]\n"
        "    return net\n"
    )
    det = models.load(f"{module}:build", weights=str(weights), threshold=0.0)
    found = det(footage[:1])[0]
    assert len(found) > 0 and all(label.startswith("thing") for label in found.labels)


def test_unknown_model_lists_known_names():
    with pytest.raises(errors.UnknownModelError, match="ssd_mobilenet_v2_coco") as info:
        models.load("yolov99")
    assert "yolov99" in str(info.value)


@pytest.mark.parametrize("case", ["missing", "corrupt", "corrupt_pb", "other_architecture"])
def test_bad_weights_give_one_clear_error(case, tmp_path):
    if case == "missing":
        path = tmp_path / "nowhere.pt"
    elif case == "corrupt":
        path = tmp_path / "corrupt.pt"
        path.write_bytes(b"\x00garbage" * 1000)
    elif case == "corrupt_pb":
        path = tmp_path / "graph.pb"
        path.write_bytes(b"\xff\xfe\xfd" * 1000)
    else:
        path = tmp_path / "ssd300.pt"
        torch.save(SSD300().state_dict(), path)
    with pytest.raises(errors.WeightsError) as info:
        models.load("ssd_mobilenet_v2_coco", weights=str(path))
    assert str(path) in str(info.value)
    if case == "other_architecture":
        assert "another architecture" in str(info.value)
    result = vidpipe_cli("detect", "--quiet", "--weights", str(path), "testsrc://ball?frames=2")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert str(path) in result.stderr and "Traceback" not in result.stderr


def test_precision_and_device_errors():
    with pytest.raises(errors.ModelError, match="fp16 needs a CUDA device"):
        models.load("ssd_mobilenet_v2_coco", precision="fp16")
    if not torch.cuda.is_available():
        with pytest.raises(errors.ModelError, match="CUDA is not available"):
            models.load("ssd_mobilenet_v2_coco", device="cuda")


def test_models_command_lists_names():
    result = vidpipe_cli("models")
    assert result.returncode == 0
    for name in ("ssd_mobilenet_v2_coco", "ssd300", "torchvision:ssdlite320_mobilenet_v3_large"):
        assert name in result.stdout


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"avx2", "avx512f", "avx512_bf16"}, "bf16"),  # Zen 4/5, Cooper Lake: native bf16
        ({"avx2", "avx512f", "amx_tile", "amx_bf16"}, "bf16"),  # Sapphire Rapids: AMX
        ({"avx2", "avx512f"}, "fp32"),  # Skylake-SP, Zen 3: bf16 would be emulated
        ({"avx2"}, "fp32"),
    ],
)
def test_precision_auto_follows_the_cpu(flags, expected, monkeypatch):
    from vidpipe.models import base

    monkeypatch.setattr(base, "cpu_flags", lambda: flags)
    precision, why = base.choose_precision("auto", torch.device("cpu"))
    assert precision == expected and why.startswith("auto:")
    det = models.load("ssd_mobilenet_v2_coco", precision="auto")
    assert det.precision == expected and det.dtype == base.PRECISIONS[expected]
    assert base.choose_precision("fp32", torch.device("cpu")) == ("fp32", "as asked")


def test_cli_says_which_precision_and_why():
    from vidpipe.models.base import choose_precision

    expected, why = choose_precision("auto", torch.device("cpu"))
    result = vidpipe_cli("detect", "testsrc://ball?width=160&height=120&frames=8")
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stderr.splitlines() if x.startswith("model"))
    assert f"{expected} on cpu" in line and why in line
    listing = vidpipe_cli("models")
    assert f"--precision auto on this CPU: {expected}" in listing.stdout


def test_batched_selection_equals_per_frame_nms(sample):
    """One batched NMS over (frame, class) groups gives what per-frame NMS gives, truncation included."""
    from vidpipe.models.boxes import decode_center_size, multiclass_nms, select_per_frame
    from vidpipe.models.ssd_mobilenet_v2 import BOX_SCALES

    det = models.load("ssd_mobilenet_v2_coco")
    with vidpipe.open(sample) as src:
        frames = [f.tensor for f, _ in zip(src, range(224), strict=False)][200:]
    batch = det.preprocess(frames)
    codes, logits = (t.float() for t in det.forward(batch))
    boxes = decode_center_size(codes[..., [1, 0, 3, 2]], det.anchors, BOX_SCALES)
    scores = torch.sigmoid(logits[..., 1:])
    for threshold, most in ((0.3, 100), (0.05, 5), (0.01, 100)):
        batched = select_per_frame(
            boxes, scores, batch.sizes, threshold=threshold, iou=0.6, max_detections=most, label=det.label
        )
        assert sum(len(d) for d in batched) > len(frames)
        for i, (h, w) in enumerate(batch.sizes):
            ref, _, classes = multiclass_nms(
                boxes[i].clamp(0, 1), scores[i], threshold=threshold, iou=0.6, max_detections=most
            )
            assert torch.allclose(batched[i].boxes, ref * ref.new_tensor([w, h, w, h]), atol=1e-4)
            assert torch.equal(batched[i].class_ids, classes + 1)
