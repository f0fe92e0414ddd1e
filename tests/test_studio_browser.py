"""The studio in a real browser (Debian chromium through Playwright): open the page, upload a photo, animate
it with a few projection and tuning steps (fitting the generator is on by default), see the reconstruction
next to a playable video, scrub the time slider, save a screenshot."""

import os
import shutil
from pathlib import Path

import pytest

from studio.testing import CHROMIUM, scrub_latencies, studio_page, tiny_backend, write_photo

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium is not installed (/usr/bin/chromium)"),
]

ROOT = Path(__file__).resolve().parents[1]


def test_animate_a_photo_and_scrub_in_chromium(tmp_path):
    pytest.importorskip("playwright")
    from playwright.sync_api import expect

    backend = tiny_backend(tmp_path)
    photo = write_photo(tmp_path / "portrait.png", size=96)
    with studio_page(backend) as page:
        expect(page.get_by_text("StyleGAN-V Studio").first).to_be_visible(timeout=60_000)
        page.wait_for_selector("#gen-frame img", timeout=60_000)

        page.get_by_role("tab", name="Animate a photo").click()
        page.locator("#anim-upload input[type=file]").set_input_files(str(photo))
        steps = page.locator("#anim-steps input[type=number]")
        steps.fill("4")
        steps.press("Enter")
        expect(page.locator("#anim-fit input[type=checkbox]")).to_be_checked()  # on by default
        tune_steps = page.locator("#anim-tune-steps input[type=number]")
        tune_steps.fill("10")
        tune_steps.press("Enter")
        page.locator("#anim-go").click()
        expect(page.locator("#anim-status")).to_contain_text("Done", timeout=180_000)
        expect(page.locator("#anim-status")).to_contain_text("fitted generator: LPIPS")
        recon = page.locator("#anim-live img")  # photo | reconstruction, beside the animations
        expect(recon).to_be_visible()
        assert recon.evaluate("img => img.naturalWidth") > 0
        video = page.locator("#anim-video video")
        expect(video).to_have_count(1, timeout=30_000)
        page.wait_for_function("document.querySelector('#anim-video video').readyState >= 2", timeout=30_000)
        info = video.evaluate("v => ({duration: v.duration, w: v.videoWidth, h: v.videoHeight, err: v.error})")
        assert info["duration"] > 0 and info["w"] > 0 and info["err"] is None, info
        assert video.evaluate("v => v.play().then(() => true)")  # the browser can play the H.264 mp4
        page.screenshot(path=str(tmp_path / "animate.png"), full_page=True)
        thumbs = page.locator("#anim-samples img")  # the sample photos as thumbnails; a click picks one
        expect(thumbs).to_have_count(4)
        thumbs.nth(1).click()
        expect(page.locator("#anim-upload")).to_contain_text("weizmann-1_", timeout=30_000)

        page.get_by_role("tab", name="Generate").click()
        ms = scrub_latencies(page, [0.37, 1.13, 2.29, 3.71])
        assert len(ms) == 4 and all(m > 0 for m in ms)
        # a bad value typed on the Generate tab reaches the page as a message (it used to vanish)
        seed = page.locator("#gen-seed input")
        seed.fill("99999999999")
        seed.press("Enter")
        expect(page.get_by_text("content seed must be a whole number").first).to_be_visible(timeout=30_000)
        seed.fill("0")
        seed.press("Enter")
        shot = tmp_path / "studio.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        if os.environ.get("SGV_SCREENSHOT") == "1":
            shutil.copy(tmp_path / "animate.png", ROOT / "bench" / "studio_screenshot.png")


def test_new_user_paths_in_chromium(tmp_path):
    """What a new user meets first: the Edit tab says up front that CLIP weights are missing; a bad dataset
    path in the Train tab is a message and creates no run folder; Stop ends a run (with data-loader
    workers) with a snapshot that loads."""
    pytest.importorskip("playwright")
    import numpy as np
    from PIL import Image
    from playwright.sync_api import expect

    from core.checkpoint import load_generator
    from studio import training_runs

    for v in range(4):  # a frames dataset at the tiny preset's 16 px
        (tmp_path / "frames" / f"v{v}").mkdir(parents=True)
        base = np.random.default_rng(v).integers(0, 255, [16, 16, 3], dtype=np.uint8)
        for j in range(8):
            Image.fromarray(np.roll(base, j, axis=1)).save(tmp_path / "frames" / f"v{v}" / f"{j:06d}.png")
    backend = tiny_backend(tmp_path, clip_factory=None, offline=True,
                           train_defaults={"workers": 2, "batch": 2, "kimg_per_tick": 0.004, "tensorboard": "false",
                                           "sample_videos": 1, "sample_frames": 2})
    runs = backend.training.outdir
    with studio_page(backend) as page:
        expect(page.get_by_text("StyleGAN-V Studio").first).to_be_visible(timeout=60_000)
        page.get_by_role("tab", name="Edit").click()
        expect(page.locator("#edit-clip-notice")).to_contain_text("Text edits are unavailable")
        expect(page.locator("#edit-clip-notice")).to_contain_text("python launch.py --clip-weights FILE")

        page.get_by_role("tab", name="Train").click()
        data = page.locator("#train-data textarea, #train-data input").first
        data.fill(str(tmp_path / "missing"))
        page.locator("#train-start").click()
        expect(page.get_by_text("does not exist").first).to_be_visible(timeout=30_000)
        assert not runs.is_dir() or not [d for d in runs.iterdir() if d.is_dir()]

        page.locator("#train-preset input").click()
        page.get_by_role("option", name="tiny").click()
        data.fill(str(tmp_path / "frames"))
        page.locator("#train-start").click()
        expect(page.locator("#train-status")).to_contain_text("tick", timeout=180_000)
        page.locator("#train-stop").click()
        expect(page.locator("#train-status")).to_contain_text("stopped at", timeout=180_000)
        assert "Traceback" not in backend.training.log_text()
        snap = training_runs.snapshots(backend.training.run_dir())[0]
        assert load_generator(snap).img_resolution == 16


def test_video_tab_end_to_end_in_chromium(tmp_path):
    """Pick a bundled sample clip, invert it with few steps (tuning on), play clip | reconstruction, scrub t
    past the clip's end, render a seamless loop and play it."""
    pytest.importorskip("playwright")
    from playwright.sync_api import expect

    backend = tiny_backend(tmp_path)
    with studio_page(backend) as page:
        page.wait_for_selector("#gen-frame img", timeout=60_000)
        page.get_by_role("tab", name="Video").click()
        page.locator("#video-samples button, #video-samples tr").first.click()
        expect(page.locator("#video-upload")).to_contain_text("weizmann-0_", timeout=30_000)
        for elem, value in (("video-frames", "6"), ("video-steps", "8"), ("video-tune-steps", "4")):
            box = page.locator(f"#{elem} input[type=number]")
            box.fill(value)
            box.press("Enter")
        expect(page.locator("#video-fit input[type=checkbox]")).to_be_checked()
        page.locator("#video-go").click()
        expect(page.locator("#video-status")).to_contain_text("Done: 6 frames", timeout=180_000)
        expect(page.locator("#video-status")).to_contain_text("fitted generator")
        for video_id in ("video-comparison",):
            page.wait_for_function(f"document.querySelector('#{video_id} video') && "
                                   f"document.querySelector('#{video_id} video').readyState >= 2", timeout=30_000)
        t = page.locator("#video-t input[type=number]")
        t.fill("40")
        t.press("Enter")
        page.wait_for_function("document.querySelector('#video-frame img') && "
                               "document.querySelector('#video-frame img').naturalWidth > 0", timeout=30_000)
        page.locator("#video-loop input[type=checkbox]").check()
        page.locator("#video-render").click()
        expect(page.locator("#video-status")).to_contain_text("seamless loop", timeout=120_000)
        page.wait_for_function("document.querySelector('#video-rendered video') && "
                               "document.querySelector('#video-rendered video').readyState >= 2", timeout=30_000)
        info = page.locator("#video-rendered video").evaluate("v => ({d: v.duration, w: v.videoWidth, e: v.error})")
        assert info["d"] > 0 and info["w"] > 0 and info["e"] is None, info
        page.screenshot(path=str(tmp_path / "video.png"), full_page=True)


def test_controls_and_keyframes_in_chromium(tmp_path):
    """Move a SeFa slider (the frame changes), add two keyframes at two times, render them, get an mp4."""
    pytest.importorskip("playwright")
    from playwright.sync_api import expect

    from studio.testing import slider_latencies

    backend = tiny_backend(tmp_path)
    with studio_page(backend) as page:
        page.wait_for_selector("#gen-frame img", timeout=60_000)
        page.get_by_text("Directions, style mixing, truncation cutoff").click()
        page.wait_for_selector("#ctl-sefa0 input[type=range]", timeout=30_000)
        before = page.locator("#gen-frame img").get_attribute("src")
        assert len(slider_latencies(page, "ctl-sefa0", [2.5])) == 1  # waits for the redrawn frame
        assert page.locator("#gen-frame img").get_attribute("src") != before
        page.get_by_text("Keyframes: content pinned in time").click()
        page.locator("#kf-add").click()
        expect(page.locator("#kf-table")).to_contain_text("ease-in-out", timeout=30_000)
        slider_latencies(page, "gen-time", [1.5])  # move the time, then a second keyframe with other content
        slider_latencies(page, "ctl-sefa0", [-2.5])
        page.locator("#kf-add").click()
        expect(page.locator("#kf-table")).to_contain_text("1.5", timeout=30_000)
        page.locator("#kf-render").click()
        page.wait_for_function("document.querySelector('#kf-video video') && "
                               "document.querySelector('#kf-video video').readyState >= 2", timeout=120_000)
        info = page.locator("#kf-video video").evaluate("v => ({d: v.duration, w: v.videoWidth, e: v.error})")
        assert info["d"] > 0 and info["w"] > 0 and info["e"] is None, info
        assert page.locator("#kf-video video").get_attribute("src").endswith(".mp4")
