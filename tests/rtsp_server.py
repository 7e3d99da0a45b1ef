"""A real RTSP server (GstRtspServer) on 127.0.0.1 serving a live H.264 test pattern at ``/test``.

Run as a script: ``rtsp_server.py [--port P] [--size WxH] [--fps F] [--still IMAGE.jpg] [--clip C.mp4]``;
prints ``READY <port>`` once it listens and serves until killed. ``--still`` also serves ``/still``: a
camera watching a still scene (the picture) with a ticking clock burned in at the top left (a small
moving pattern, CLOCK_BOX pixels). Every client of those shares one pipeline (one encoder: one CPU
cost however many clients), each gets its own RTP session. ``--clip`` also serves ``/clip``: an H.264
MP4's own stream at its own pace, not re-encoded, from its start for each client.
"""

from __future__ import annotations

import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def launch(width: int, height: int, fps: int) -> str:
    return (
        f"( videotestsrc pattern=ball is-live=true ! video/x-raw,width={width},height={height},framerate={fps}/1 "
        f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} ! rtph264pay name=pay0 pt=96 )"
    )


CLOCK_BOX = (8, 8, 160, 32)  # x, y, width, height of /still's clock


def still_launch(image: str, width: int, height: int, fps: int) -> str:
    x, y, w, h = CLOCK_BOX
    return (
        f"( compositor name=mix sink_1::xpos={x} sink_1::ypos={y} ! video/x-raw,width={width},height={height},"
        f"framerate={fps}/1 ! videoconvert ! video/x-raw,format=I420 ! x264enc tune=zerolatency "
        f"speed-preset=ultrafast key-int-max={fps} "
        "! rtph264pay name=pay0 pt=96 "
        f"filesrc location={image} ! jpegdec ! videoconvert ! videoscale ! video/x-raw,width={width},height={height} "
        f"! imagefreeze is-live=true ! video/x-raw,framerate={fps}/1 ! mix. "
        f"videotestsrc pattern=ball is-live=true ! video/x-raw,width={w},height={h},framerate={fps}/1 ! mix. )"
    )


def clip_launch(path: str) -> str:
    return f"( filesrc location={path} ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=-1 )"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--size", default="320x240")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--still", help="a JPEG picture: also serve /still, a still scene with a clock")
    parser.add_argument("--clip", help="an H.264 MP4: also serve /clip, its own stream")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch(width, height, args.fps))
    factory.set_shared(True)
    server.get_mount_points().add_factory("/test", factory)
    if args.still:
        still = GstRtspServer.RTSPMediaFactory()
        still.set_launch(still_launch(args.still, width, height, args.fps))
        still.set_shared(True)
        server.get_mount_points().add_factory("/still", still)
    if args.clip:
        clip = GstRtspServer.RTSPMediaFactory()
        clip.set_launch(clip_launch(args.clip))
        server.get_mount_points().add_factory("/clip", clip)
    if server.attach(None) == 0:
        print(f"FAILED cannot listen on port {args.port}", flush=True)
        sys.exit(1)
    print(f"READY {server.get_bound_port()}", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    sys.exit(main())
