"""Make docs/serve-page.png: ``vidpipe serve`` on examples/vidpipe.yaml, one more stream added through the
page's form, photographed by a headless Chromium (Debian's ``chromium``, driven by Playwright).

    .venv/bin/python scripts/serve-screenshot.py [OUT.png]
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
PORT = 8093


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "serve-page.png"
    state = Path(tempfile.mkdtemp()) / "state.json"
    serve = subprocess.Popen(
        [str(Path(sys.executable).with_name("vidpipe")), "serve", "--config", "examples/vidpipe.yaml",
         "--port", str(PORT), "--state", str(state)],
        cwd=ROOT,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{PORT}"
        for _ in range(600):
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 390})
            page.goto(url)
            page.fill("input[name=name]", "smpte")
            page.fill("input[name=uri]", "testsrc://smpte?live=1&frames=100000000&width=640&height=360&fps=15")
            page.fill("input[name=detect_fps]", "5")
            page.click("button[type=submit]")
            page.wait_for_timeout(12_000)  # counts go up, every picture arrives
            page.screenshot(path=str(out))
            browser.close()
    finally:
        serve.terminate()
        serve.wait(60)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
