"""Privacy regions and blurred labels: filled in every picture vidpipe writes or serves, drawings
included, while detection and counting go on unchanged."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import SAMPLE, vidpipe_cli

from media import first_frames, reference_decode
from vidpipe.analytics.privacy import Privacy, parse_region, pixelate
from vidpipe.errors import VidpipeError
from vidpipe.types import Detections, Frame, Result

LEFT_HALF = "0,0,192,0,192,288,0,288"  # of the bundled clip's 384×288 frames: the desk and half the door


def _frame(pixels: torch.Tensor) -> Frame:
    return Frame(tensor=pixels, stream="0", index=0, pts=0.0)


def test_a_region_is_filled_and_a_blurred_label_is_pixelated():
    pixels = torch.randint(0, 256, (120, 160, 3), dtype=torch.uint8)
    original = pixels.clone()
    found = Detections(torch.tensor([[100.0, 20.0, 148.0, 100.0], [10.0, 10.0, 40.0, 40.0]]),
                       torch.tensor([0.9, 0.8]), torch.tensor([1, 3]), ["person", "car"])  # fmt: skip
    stage = Privacy(["rel:0,0,0.25,0,0.25,1,0,1"], blur=["person"])
    result = stage(Result(_frame(pixels), found))
    assert result.privacy is not None and result.privacy.shape == (120, 160)
    assert pixels[:, :40].max() == 0 and torch.equal(pixels[:, 41:100], original[:, 41:100])  # the region only
    box = pixels[20:100, 100:148].int()
    assert not torch.equal(box, original[20:100, 100:148].int())
    colours = torch.unique(box.reshape(-1, 3), dim=0)
    assert len(colours) <= (48 // 12) * (80 // 12)  # 12-pixel blocks, each one colour: nothing can be read
    lone = torch.randint(0, 256, (50, 50, 3), dtype=torch.uint8)
    pixelate(lone, [-10, -10, 5, 5])  # (a box partly outside the frame is clipped)
    for bad, words in (("0,0,10,10", "at least 3 points"), ("rel:0,0,2,0,0,1", "fractions of the frame")):
        with pytest.raises(VidpipeError, match=words):
            parse_region(bad)


@pytest.mark.slow
def test_the_video_hides_the_region_drawings_included_and_counting_goes_on(tmp_path):
    clip = first_frames(SAMPLE, tmp_path / "clip.mp4", 250)  # he walks to the desk, in the left half
    out, video = tmp_path / "out.jsonl", tmp_path / "out.mp4"
    args = ["--line", "door=192,40,192,288", "--zone", "desk=0,150,150,150,150,288,0,288", "--json", str(out)]
    result = vidpipe_cli("detect", str(clip), *args, "--video", str(video), "--privacy", LEFT_HALF, "--blur", "person")
    assert result.returncode == 0, result.stderr
    frames = reference_decode(video, 384, 288)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    inside = [r["frame"] for r in records if "detections" in r and any(d["box"][2] < 180 for d in r["detections"])]
    assert len(inside) > 20, "the person never went into the hidden half"
    assert frames[:, :, :188].max() <= 24  # (the encoder's noise at the border): no person, box nor label shows
    assert frames[:, :, 200:].float().mean() > 40  # the rest is the picture
    plain = tmp_path / "plain.jsonl"
    assert vidpipe_cli("detect", str(clip), *args[:-1], str(plain)).returncode == 0
    events = lambda path: [json.loads(x) for x in path.read_text().splitlines() if '"event"' in x]  # noqa: E731
    assert [(e["event"], e.get("frame")) for e in events(out)] == [(e["event"], e.get("frame")) for e in events(plain)]
    assert any(e["event"] == "zone_entered" for e in events(out))


def test_a_bad_region_is_one_line_naming_it():
    result = vidpipe_cli("detect", str(SAMPLE), "--privacy", "0,0,10", "--max-frames", "2")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--privacy[0] privacy region '0,0,10': expected x,y pairs of at least 3 points" in result.stderr, (
        result.stderr
    )
