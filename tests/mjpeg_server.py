"""An HTTP MJPEG camera on 127.0.0.1, as IP cameras serve one: a never-ending
``multipart/x-mixed-replace`` reply of JPEG frames (a moving square) at ``/cam``.

Run as a script: ``mjpeg_server.py [--fps F] [--frames N]``; prints ``READY <port>`` once it listens.
``--frames N`` ends each connection after N frames (a camera that drops its clients).
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image, ImageDraw

BOUNDARY = "vidpipeframe"


def jpeg(index: int, width: int = 320, height: int = 240) -> bytes:
    image = Image.new("RGB", (width, height), (40, 40, 40))
    x = (index * 7) % (width - 40)
    ImageDraw.Draw(image).rectangle((x, 100, x + 40, 140), fill=(230, 200, 20))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=80)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fps", type=float, default=10)
    parser.add_argument("--frames", type=int, default=0, help="end each connection after N frames (0: never)")
    args = parser.parse_args()

    class Camera(BaseHTTPRequestHandler):
        def log_message(self, *_args) -> None:
            pass

        def do_GET(self) -> None:
            if self.path != "/cam":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            index = 0
            try:
                while not args.frames or index < args.frames:
                    data = jpeg(index)
                    head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n"
                    self.wfile.write(head.encode() + data + b"\r\n")
                    self.wfile.flush()
                    index += 1
                    time.sleep(1 / args.fps)
            except OSError:
                return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Camera)
    server.daemon_threads = True
    print(f"READY {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
