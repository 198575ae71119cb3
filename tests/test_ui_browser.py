"""`cammimic ui` in a real browser: headless Chromium driven by Playwright.

Uses Debian's ``chromium`` package (``apt-get install chromium``), not Playwright's browser
downloads. Skipped, with the reason, where no Chromium is installed. Set
``CAMMIMIC_UPDATE_SCREENSHOT=1`` to rewrite docs/images/ui.png.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline: no usage reports

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = (
    os.environ.get("CAMMIMIC_CHROMIUM")
    or shutil.which("chromium")
    or shutil.which("chromium-browser")
)
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium installed (apt-get install chromium); "
    "the browser test drives Debian's chromium with Playwright",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def save_for_docs(src: Path, dst: Path) -> None:
    """The screenshot at 256 colours (a quarter of the bytes) for the README."""
    from PIL import Image

    with Image.open(src) as im:
        im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(
            dst, "PNG", optimize=True
        )


def _camera_file() -> dict:
    """An editable camera file: a pan of 4 px a frame over 9 frames."""
    import numpy as np

    from cammimic.camera_file import to_camera_file
    from cammimic.motion import MotionEstimate

    hs = np.repeat(np.array([[[1.0, 0, -4], [0, 1, 0], [0, 0, 1]]]), 8, axis=0)
    return to_camera_file(
        MotionEstimate(homographies=hs, width=192, height=128, estimator="edited")
    )


def test_the_app_in_a_browser(tiny_weights, tmp_path):
    pytest.importorskip("gradio", reason='the app needs gradio: pip install "cammimic[ui]"')
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    from cammimic.ui import UISettings, launch

    started = time.monotonic()
    runs = tmp_path / "runs"
    # a client may name only weights folders the operator allowed: the tiny weights' folder here
    settings = UISettings(runs_dir=runs, weights_dirs=[Path(tiny_weights).parent])
    app = launch(host="127.0.0.1", port=free_port(), settings=settings, block=False)
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.set_default_timeout(90_000)
            page.goto(app.local_url)
            page.locator("#settings").get_by_text("Settings").click()  # open the accordion early
            page.locator("#sampling-steps input").wait_for(state="visible")

            # 1. the homography method on the example video and image
            page.locator("#reference-video input[type=file]").set_input_files(
                str(ROOT / "examples" / "reference.mp4")
            )
            page.locator("#user-image input[type=file]").set_input_files(
                str(ROOT / "examples" / "scene.jpg")
            )
            page.locator("#user-image img").wait_for()
            page.locator("#reference-video video").wait_for()
            page.locator("#run").click()
            status = page.locator("#status textarea")
            page.wait_for_function(
                "() => document.querySelector('#status textarea').value.startsWith('done: ')"
            )
            first = runs / status.input_value().removeprefix(
                "done: "
            )  # the run folder's name: no server path
            page.locator("#output-video video").wait_for()
            page.wait_for_function(
                "() => document.querySelector('#output-video video').readyState >= 2"
            )
            page.locator("#trajectory img").wait_for()
            assert (first / "output.mp4").is_file() and first.parent == runs
            score = json.loads((first / "score.json").read_text())["camera_score"]
            assert f"CameraScore {score:.4g}" in page.locator("#score").inner_text()
            shot = tmp_path / "ui.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            if os.environ.get("CAMMIMIC_UPDATE_SCREENSHOT"):
                save_for_docs(shot, ROOT / "docs" / "images" / "ui.png")

            # 2. a short cammimic run on tiny random weights
            page.locator("#method label", has_text="cammimic").click()
            page.locator("#prompt textarea").fill("an astronaut")
            page.locator("#weights textarea").fill(str(tiny_weights))
            tiny = (
                ("frames", 8),
                ("width", 64),
                ("height", 64),
                ("stage1-steps", 2),
                ("stage2-steps", 2),
                ("sampling-steps", 2),
            )
            for name, value in tiny:
                field = page.locator(f"#{name} input")
                for _ in range(
                    5
                ):  # a field filled while the app re-renders can lose its value: retry
                    field.fill(str(value))
                    field.press("Tab")  # commit the value (blur)
                    page.wait_for_timeout(100)
                    if field.input_value() == str(value):
                        break
            for name, value in tiny:
                sync_api.expect(page.locator(f"#{name} input")).to_have_value(str(value))
            page.locator("#run").click()
            page.wait_for_function(
                f"() => {{ const v = document.querySelector('#status textarea').value;"
                f" return v.startsWith('done: ') && v !== 'done: {first.name}'; }}"
            )
            second = runs / status.input_value().removeprefix("done: ")
            page.wait_for_function("() => document.querySelector('#weak-video video') !== null")
            run = json.loads((second / "run.json").read_text())
            assert run["method"] == "cammimic" and run["finetune"]["steps"] == {
                "stage1": 2,
                "stage2": 2,
            }
            assert (run["num_frames"], run["width"], run["height"]) == (8, 64, 64)
            page.screenshot(path=str(tmp_path / "ui-cammimic.png"), full_page=True)

            # 3. issue 25's fields are on the form, and an edited camera file replaces the video
            for name in ("candidates", "window-overlap"):
                page.locator(f"#{name} input").wait_for(state="visible")
            for name in ("motion-strength", "motion-speed", "motion-reverse", "motion-smooth"):
                page.locator(f"#{name}").wait_for(state="visible")
            page.locator("#reference-video button[aria-label=Clear]").click()
            page.locator("#reference-video video").wait_for(state="detached")
            camera = tmp_path / "camera.json"
            camera.write_text(json.dumps(_camera_file()))
            page.locator("#camera-file input[type=file]").set_input_files(str(camera))
            page.locator('#camera-file [aria-label="camera.json"]').wait_for()  # uploaded
            page.locator("#method label", has_text="homography").click()
            page.locator("#run").click()
            page.wait_for_function(
                f"() => {{ const v = document.querySelector('#status textarea').value;"
                f" return v.startsWith('done: ') && v !== 'done: {second.name}'; }}"
            )
            third = runs / status.input_value().removeprefix("done: ")
            run = json.loads((third / "run.json").read_text())
            assert run["reference"]["camera"]["kind"] == "file" and run["method"] == "homography"
            assert (run["num_frames"], run["width"], run["height"]) == (
                8,
                64,
                64,
            )  # step 2's settings
            browser.close()
    finally:
        app.close()
    assert time.monotonic() - started < 180
