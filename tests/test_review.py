"""The review page, on a real run of the pipeline: the server refuses everything without its token, from a foreign
Host or Origin, or outside OUTDIR (and writes nothing then); a real browser (Debian's chromium driven by
Playwright) un-redacts the face, draws a region, bleeps a word, approves and renders, and the rendered video's
pixels show exactly those decisions."""

from __future__ import annotations

import csv
import http.client
import io
import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from benchmarks.review_task import CHROMIUM_ARGS, Server, serving
from conftest import EVALDATA, REDACT, wait_until
from media import box_difference, decoded
from redact.plan import Plan, plan_path
from redact.review.decisions import decisions_path

STEM = "bbaf2n"
ORIGINAL = EVALDATA / "video" / "grid" / f"{STEM}.mpg"
REGION = [10, 10, 100, 80]  # drawn on frame 10, through frame 30: background, away from the face
REGION_FRAMES = (10, 30)


@pytest.fixture(scope="module")
def run_outdir(grid_run: Path) -> Path:
    """The shared real run (conftest.grid_run); tests copy it before changing anything."""
    return grid_run


@pytest.fixture(scope="module")
def server(run_outdir: Path, tmp_path_factory) -> Iterator[Server]:
    """The review app on a copy of the run."""
    outdir = tmp_path_factory.mktemp("review") / "out"
    shutil.copytree(run_outdir, outdir)
    with serving(outdir) as running:
        yield running


def request(server: Server, method: str, path: str, *, headers: dict | None = None, body: bytes | None = None,
            token: str | None = "header") -> tuple[int, bytes, http.client.HTTPResponse]:
    """One raw request (the path is sent exactly as given: no client normalises `..` or %2e away)."""
    conn = http.client.HTTPConnection(server.host, timeout=30)
    h = {"Host": server.host}
    if token == "header":
        h["X-Redact-Token"] = server.token
    h.update(headers or {})
    conn.request(method, path, body=body, headers=h)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, data, response


def snapshot(outdir: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(outdir.iterdir())}


def decisions(server: Server) -> dict:
    return json.loads(decisions_path(server.outdir, STEM).read_text(encoding="utf-8"))


def head(server: Server) -> str:
    status, body, _ = request(server, "GET", f"/api/v/{STEM}")
    assert status == 200
    return json.loads(body)["head"]


JSON = {"Content-Type": "application/json"}
UNTRACK = {"op": "tracks", "ids": [], "value": {"redact": False, "reason": "not-exempt"}}


# ------------------------------------------------------------------------------------------------ security
def test_no_token_no_access(server: Server) -> None:
    for path in ["/", f"/api/v/{STEM}", "/api/videos", f"/api/v/{STEM}/frame/0.jpg?view=original", "/static/app.js"]:
        status, body, _ = request(server, "GET", path, token=None)
        assert status == 401, path
        assert STEM not in body.decode() and b"\xff\xd8" not in body  # nothing of the video, not even its name


def test_wrong_token_refused(server: Server) -> None:
    wrong = server.token[:-2] + ("AA" if not server.token.endswith("AA") else "BB")
    for how in [{"X-Redact-Token": wrong}, {"Cookie": f"redact_token={wrong}"}]:
        status, body, _ = request(server, "GET", f"/api/v/{STEM}", headers=how, token=None)
        assert status == 403 and STEM not in body.decode()
    status, _, _ = request(server, "GET", f"/api/videos?token={wrong}", token=None)
    assert status == 403
    # a right token beside a wrong one is no key either
    status, _, _ = request(server, "GET", f"/api/videos?token={wrong}")
    assert status == 403


def test_token_by_query_sets_strict_httponly_cookie(server: Server) -> None:
    status, body, response = request(server, "GET", f"/?token={server.token}", token=None)
    assert status == 200 and b"Redaction review" in body
    cookie = response.getheader("set-cookie")
    assert f"redact_token={server.token}" in cookie and "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
    assert "frame-ancestors 'none'" in response.getheader("content-security-policy")
    status, body, _ = request(server, "GET", "/api/videos", headers={"Cookie": f"redact_token={server.token}"}, token=None)
    assert status == 200 and json.loads(body)["videos"] == [STEM]


def test_foreign_host_refused(server: Server) -> None:
    """DNS rebinding: a page at evil.example whose name now points at 127.0.0.1 sends Host: evil.example."""
    port = server.host.rsplit(":", 1)[1]
    for host in [f"evil.example:{port}", "evil.example", "127.0.0.1:1", f"127.0.0.1.evil.example:{port}"]:
        status, body, _ = request(server, "GET", f"/api/v/{STEM}", headers={"Host": host})
        assert status == 403, host
        assert STEM not in body.decode()
    status, _, _ = request(server, "GET", "/api/videos", headers={"Host": f"localhost:{port}"})
    assert status == 200


@pytest.mark.parametrize("bound", ["0.0.0.0", "192.168.1.23"])
def test_lan_host(run_outdir: Path, bound: str) -> None:
    """`--host 0.0.0.0`: a LAN browser's Host (the machine's LAN address or name) is served, with the token only;
    `--host ADDRESS`: that address is served, other names are not. Loopback connections carrying the Host a LAN
    browser would send."""
    with serving(run_outdir, bound=bound) as server:
        port = server.host.rsplit(":", 1)[1]
        lan = {"Host": f"192.168.1.23:{port}"}
        status, body, _ = request(server, "GET", "/api/videos", headers=lan)
        assert status == 200 and json.loads(body)["videos"] == [STEM]
        status, _, _ = request(server, "GET", f"/?token={server.token}", headers=lan, token=None)
        assert status == 200
        assert request(server, "GET", "/api/videos", headers=lan, token=None)[0] == 401
        assert request(server, "GET", "/api/videos", headers={**lan, "X-Redact-Token": "x" + server.token})[0] == 403
        named = request(server, "GET", "/api/videos", headers={"Host": f"records-desk.lan:{port}"})[0]
        assert named == (200 if bound == "0.0.0.0" else 403)
        assert request(server, "GET", "/api/videos", headers={"Host": f"localhost:{port}"})[0] == 200


@pytest.mark.parametrize("path", [
    "/static/../review.py", "/static/..%2freview.py", "/static/%2e%2e%2freview.py", "/static/%2e%2e%2f%2e%2e%2fpyproject.toml",
    "/static//etc/passwd", "/static/%2fetc%2fpasswd", "/static/index.html%00.js", "/static/reasons.toml",
    "/api/v/..%2f..%2fetc%2fpasswd", "/api/v/%2e%2e%2f%2e%2e%2fetc%2fpasswd/frame/0.jpg", "/api/v/../../etc/passwd",
    "/api/v/%2fetc%2fpasswd", "/api/v/bbaf2n.plan.sqlite", "/api/v/" + STEM + "%2f..%2f..%2fx/boxes?first=0&last=1",
    "/../../../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", f"/api/v/{STEM}/thumb/999.jpg",
])
def test_paths_outside_outdir_refused(server: Server, path: str) -> None:
    status, body, _ = request(server, "GET", path, headers={"Cookie": f"redact_token={server.token}"})
    assert status in (400, 404), (path, status)
    assert b"root:" not in body and b"import" not in body and b"SQLite" not in body


def test_posts_need_header_json_and_our_origin(server: Server) -> None:
    before = snapshot(server.outdir)
    body = json.dumps({**UNTRACK, "ids": [track_id(server)], "base": head(server), "by": "Mallory"}).encode()
    path = f"/api/v/{STEM}/decisions"
    cookie = {"Cookie": f"redact_token={server.token}"}
    cases = [
        ({**cookie, **JSON}, None, 403),  # the cookie alone (a cross-site form would send it): not enough
        ({"Content-Type": "application/x-www-form-urlencoded"}, "header", 415),
        ({"Content-Type": "text/plain"}, "header", 415),
        ({**JSON, "Origin": "http://evil.example"}, "header", 403),
        ({**JSON, "Origin": "null"}, "header", 403),
        ({**JSON, "Origin": f"http://{server.host}.evil.example"}, "header", 403),
        ({**JSON, "Sec-Fetch-Site": "cross-site"}, "header", 403),
        ({**JSON, "Host": "evil.example"}, "header", 403),
        ({**JSON, "X-Redact-Token": "nope"}, None, 403),
        (JSON, None, 401),
    ]
    for headers, token, expected in cases:
        status, _, _ = request(server, "POST", path, headers=headers, body=body, token=token)
        assert status == expected, (headers, status)
        status, _, _ = request(server, "POST", f"/api/v/{STEM}/render", headers=headers, body=b"{}", token=token)
        assert status == expected, ("render", headers, status)
    time.sleep(0.2)
    assert snapshot(server.outdir) == before  # nothing written on any refused request


def track_id(server: Server) -> int:
    with Plan(plan_path(server.outdir, STEM)) as plan:
        return plan.tracks()[0].id


def test_api_conflict_and_user_errors(server: Server) -> None:
    """A change based on a stale head is refused (409) and one the decisions reject says why (400); neither writes."""
    before = snapshot(server.outdir)
    path = f"/api/v/{STEM}/decisions"
    stale = json.dumps({**UNTRACK, "ids": [track_id(server)], "base": "1" * 64, "by": "Bob"}).encode()
    status, body, _ = request(server, "POST", path, headers=JSON, body=stale)
    assert status == 409 and b"changed" in body
    bad = json.dumps({**UNTRACK, "ids": [track_id(server)], "value": {"redact": False, "reason": "because"},
                      "base": head(server), "by": "Bob"}).encode()
    status, body, _ = request(server, "POST", path, headers=JSON, body=bad)
    assert status == 400 and b"unknown reason code" in body
    nameless = json.dumps({**UNTRACK, "ids": [track_id(server)], "base": head(server), "by": " "}).encode()
    status, body, _ = request(server, "POST", path, headers=JSON, body=nameless)
    assert status == 400 and b"reviewer" in body
    status, _, _ = request(server, "POST", path, headers=JSON, body=b"{not json")
    assert status == 400
    assert snapshot(server.outdir) == before


def test_the_release_button_refuses_what_redact_release_refuses(server: Server) -> None:
    """The page's release (POST /api/v/STEM/release) asks for a case and a requester, and refuses decisions nobody
    approved with `redact release`'s sentence; nothing is written."""
    before = snapshot(server.outdir)
    path = f"/api/v/{STEM}/release"
    for body, said in [(b"[1]", b"the body must be"), (b"{not json", b"not JSON"),
                       (json.dumps({"case": " ", "requester": "A"}).encode(), b"Give the case"),
                       (json.dumps({"case": "PRR-1", "requester": "A. Requester"}).encode(), b"not approved")]:
        status, answer, _ = request(server, "POST", path, headers=JSON, body=body)
        assert status == 400 and said in answer, (body, status, answer)
    assert snapshot(server.outdir) == before and not (server.outdir / "releases").exists()


def test_the_original_sound_for_the_player(server: Server) -> None:
    """The page plays the original's sound (the reviewer must hear what the PII rules missed), seekable, only with
    the token."""
    import wave

    status, body, response = request(server, "GET", f"/api/v/{STEM}/audio.wav")
    assert status == 200 and response.getheader("content-type") == "audio/wav"
    with wave.open(io.BytesIO(body)) as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1 and 2.9 < w.getnframes() / 16000 < 3.2
        speech = np.frombuffer(w.readframes(w.getnframes()), np.int16)
    assert np.abs(speech.astype(float)).mean() > 100  # a voice, not silence
    status, part, response = request(server, "GET", f"/api/v/{STEM}/audio.wav", headers={"Range": "bytes=1000-1999"})
    assert status == 206 and part == body[1000:2000]
    assert request(server, "GET", f"/api/v/{STEM}/audio.wav", token=None)[0] == 401


def test_api_frames_boxes_and_thumbs(server: Server) -> None:
    import cv2

    status, body, response = request(server, "GET", f"/api/v/{STEM}/frame/5.jpg?view=original")
    assert status == 200 and response.getheader("content-type") == "image/jpeg"
    original = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    status, body, _ = request(server, "GET", f"/api/v/{STEM}/frame/5.jpg?view=preview")
    preview = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert original.shape == preview.shape == (288, 360, 3)
    status, body, _ = request(server, "GET", f"/api/v/{STEM}/boxes?first=0&last=10")
    boxes = json.loads(body)["frames"]["5"]
    assert boxes[0]["t"] == track_id(server) and boxes[0]["r"] is True
    x1, y1, x2, y2 = map(int, boxes[0]["b"])
    face = np.abs(original[y1:y2, x1:x2].astype(int) - preview[y1:y2, x1:x2]).mean()
    assert face > 10  # the preview blurs the face the original shows
    assert request(server, "GET", f"/api/v/{STEM}/frame/75.jpg")[0] == 400
    assert request(server, "GET", f"/api/v/{STEM}/frame/0.jpg?view=raw")[0] == 400
    status, body, _ = request(server, "GET", f"/api/v/{STEM}/thumb/{track_id(server)}.jpg")
    assert status == 200 and body[:2] == b"\xff\xd8"


def test_cli_prints_url_first_and_refuses_a_missing_folder(run_outdir: Path, tmp_path: Path) -> None:
    proc = subprocess.Popen([*REDACT, "review", str(run_outdir), "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("http://127.0.0.1:") and "/?token=" in line
        host, token = line[len("http://"):].split("/?token=")
        status, body, _ = request(Server(host, token, run_outdir), "GET", "/api/videos")
        assert status == 200 and json.loads(body)["videos"] == [STEM]
    finally:
        proc.terminate()
        proc.wait(10)
    missing = subprocess.run([*REDACT, "review", str(tmp_path / "nope")], capture_output=True, text=True)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "no such folder" in missing.stderr


# ------------------------------------------------------------------------------------------------ the page
def test_review_in_a_browser(server: Server, run_outdir: Path, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    track = track_id(server)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 960})
            page.set_default_timeout(15_000)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(server.url)
            expect(page.locator(".group")).to_have_count(1)
            assert "token" not in page.url  # out of the address bar and history
            expect(page.locator("#frame")).to_have_attribute("data-frame", "0")

            # nothing changes without a reviewer's name
            page.locator(".group .unredact").click()
            expect(page.locator("#message")).to_contain_text("name")
            page.fill("#reviewer", "Alice Ünver")

            # keyboard: frame stepping, view switch
            page.evaluate("document.activeElement.blur()")  # shortcuts are off while typing in a field
            for _ in range(3):
                page.keyboard.press("ArrowRight")
            expect(page.locator("#frame")).to_have_attribute("data-frame", "3")
            page.keyboard.press("o")
            expect(page.locator("#view-badge")).to_contain_text("ORIGINAL")
            page.keyboard.press("ArrowLeft")
            expect(page.locator("#frame-no")).to_have_value("2")
            page.keyboard.press("Space")  # play: the original's sound, where it can play, is the clock
            expect(page.locator("#play")).to_have_text("Pause")
            page.wait_for_timeout(800)
            page.keyboard.press("Space")
            expect(page.locator("#play")).to_have_text("Play")
            assert int(page.locator("#frame-no").input_value()) > 5

            # un-redact the face row, whole; the dialog insists on a reason
            page.locator(".group .unredact").click()
            page.locator("#action-ok").click()
            expect(page.locator("#action-error")).to_contain_text("reason")
            page.select_option("#action-reason", "not-exempt")
            page.locator("#action-ok").click()
            expect(page.locator(".group .state")).to_have_text("released")
            assert decisions(server)["tracks"] == {str(track): {"redact": False, "reason": "not-exempt"}}

            # draw a region on frame 10, static, filled, through frame 30
            page.fill("#frame-no", str(REGION_FRAMES[0]))
            page.locator("#frame-no").press("Enter")
            expect(page.locator("#frame")).to_have_attribute("data-frame", str(REGION_FRAMES[0]))
            page.locator("#draw").click()
            bbox = page.locator("#overlay").bounding_box()
            sx, sy = bbox["width"] / 360, bbox["height"] / 288
            page.mouse.move(bbox["x"] + REGION[0] * sx, bbox["y"] + REGION[1] * sy)
            page.mouse.down()
            page.mouse.move(bbox["x"] + 50 * sx, bbox["y"] + 40 * sy, steps=4)
            page.mouse.move(bbox["x"] + REGION[2] * sx, bbox["y"] + REGION[3] * sy, steps=4)
            page.mouse.up()
            expect(page.locator("#action")).to_be_visible()
            page.fill("#action-last", str(REGION_FRAMES[1]))
            page.select_option("#action-mode", "fill")
            page.select_option("#action-reason", "home-interior")
            page.locator("#action-ok").click()
            expect(page.locator("#action-error")).to_be_hidden(timeout=3000)
            expect(page.locator(".decisions li")).to_have_count(2)
            regions = decisions(server)["regions"]
            assert len(regions) == 1
            r = regions[0]
            assert r["frames"] == list(REGION_FRAMES) and r["mode"] == "fill" and r["follow"] is False
            assert r["reason"] == "home-interior"
            assert np.allclose(r["box"], REGION, atol=2)

            # bleep the first word
            page.locator('.word[data-i="0"]').click()
            page.select_option("#action-reason", "b6")
            page.locator("#action-ok").click()
            expect(page.locator('.word[data-i="0"]')).to_have_class("word manual")
            words = decisions(server)["words"]
            assert len(words) == 1 and words[0]["redact"] is True and words[0]["reason"] == "b6"
            assert words[0]["text"] == "Bimble" and words[0]["start"] == pytest.approx(0.59)

            # approve
            page.locator("#approve").click()
            page.locator("#action-ok").click()
            expect(page.locator("#approval")).to_contain_text("approved by Alice Ünver")
            state = decisions(server)
            assert state["approved"]["by"] == "Alice Ünver"
            assert [e["by"] for e in state["history"]] == ["Alice Ünver"] * 4

            # a change from elsewhere while the page's dialog is open, then the page's: refused (409), the page
            # reloads and says who changed what
            page.locator("#approve").click()  # the page thinks it is approved: "withdraw"
            status, _, _ = request(server, "POST", f"/api/v/{STEM}/decisions", headers=JSON, body=json.dumps(
                {"op": "add", "list": "frame_ranges", "value": {"frames": [70, 74], "mode": "blur", "reason": "b7c"},
                 "base": head(server), "by": "Bob"}).encode())
            assert status == 200
            page.locator("#action-ok").click()
            expect(page.locator("#message")).to_contain_text("Not saved: Bob added frame range f1, after this page read")
            expect(page.locator("#approval")).to_have_text("not approved")
            assert len(decisions(server)["history"]) == 5
            page.locator('.decisions li:has-text("f1") button:has-text("Remove")').click()
            page.locator("#action-ok").click()
            expect(page.locator(".decisions li")).to_have_count(3)
            page.locator("#approve").click()
            page.locator("#action-ok").click()
            expect(page.locator("#approval")).to_contain_text("approved by Alice Ünver")

            # the screenshot: original view with outlines, on a frame inside the region
            page.fill("#frame-no", "20")
            page.locator("#frame-no").press("Enter")
            expect(page.locator("#frame")).to_have_attribute("data-frame", "20")
            page.wait_for_timeout(300)
            shot = tmp_path / "review.png"
            page.screenshot(path=str(shot), full_page=True)

            # render, with its progress bar
            page.locator("#render").click()
            expect(page.locator("#render-state")).to_have_attribute("data-state", "done", timeout=120_000)
            assert not errors, errors
        finally:
            browser.close()

    final = decisions(server)
    assert final["approved"]["by"] == "Alice Ünver" and not final["frame_ranges"]
    log = json.loads((server.outdir / f"{STEM}.redaction.json").read_text(encoding="utf-8"))
    assert log["review"]["history_head"] == final["history"][-1]["hash"]

    original, before, after = (decoded(p) for p in (ORIGINAL, run_outdir / f"{STEM}.redacted.mp4",
                                                       server.outdir / f"{STEM}.redacted.mp4"))
    assert len(original) == len(after) == 75
    with Plan(plan_path(server.outdir, STEM)) as plan:
        fb = plan.track_boxes(track)
    faces = list(zip(fb.frame.tolist(), fb.dets.xyxy.tolist(), strict=True))
    released = [box_difference(after[f], original[f], box) for f, box in faces]
    blurred = [box_difference(before[f], original[f], box) for f, box in faces]
    # the release re-encodes (x264 from MPEG-1): a few levels of difference, more where the fill costs bits
    assert np.median(released) < 4 and max(released) < 9 and min(blurred) > 15, (max(released), min(blurred))
    a, b = REGION_FRAMES
    inside = [box_difference(after[f], original[f], REGION) for f in range(a, b + 1)]
    outside = [box_difference(after[f], original[f], REGION) for f in (*range(0, a), *range(b + 1, 75))]
    assert min(inside) > 40 and max(after[f][12:78, 12:98].max() for f in range(a, b + 1)) < 40  # filled (black)
    assert max(outside) < 9 and np.median(outside) < 4, max(outside)

    # the bleeped word: a 1 kHz tone where it was said, marked in the transcript, not heard when re-transcribed
    from redact.review.release import release
    from redact.transcribe import iter_audio, load_asr, transcribe

    word = final["words"][0]
    audio = np.concatenate([b[:, 0] for b in iter_audio(server.outdir / f"{STEM}.redacted.mp4")])
    span = audio[int((word["start"] + 0.05) * 16000):int((word["end"] - 0.05) * 16000)]
    spectrum = np.abs(np.fft.rfft(span))
    assert abs(np.argmax(spectrum) * 16000 / len(span) - 1000) < 20  # the tone, nothing of the voice
    transcript = json.loads((server.outdir / f"{STEM}.transcript.json").read_text(encoding="utf-8"))
    assert transcript["segments"][0]["words"][0]["redacted"] == "b6" and "imble" not in json.dumps(transcript)
    heard = " ".join(w.word for s in transcribe(server.outdir / f"{STEM}.redacted.mp4", load_asr("whisper-base")).segments
                     for w in s.words).lower()
    assert "bimble" not in heard, heard

    # and the package a requester gets from it
    package = release(server.outdir, STEM, case="24-1187", requester="J. Doe", dest=tmp_path / "pkg")
    check = subprocess.run(["sha256sum", "-c", "manifest.sha256"], cwd=package.folder, capture_output=True, text=True)
    assert check.returncode == 0 and check.stdout.count(": OK") == len(package.files) - 1, check.stdout
    with open(package.folder / "exemptions.csv", encoding="utf-8") as f:
        rows = {(r["media"], r["class"], r["source"], r["action"], r["reason_code"], r["reviewer"]) for r in csv.DictReader(f)}
    assert rows == {("video", "face", "manual", "unredacted", "not-exempt", "Alice Ünver"),
                    ("video", "region", "manual", "redacted", "home-interior", "Alice Ünver"),
                    ("audio", "speech", "manual", "redacted", "b6", "Alice Ünver")}, rows


# ------------------------------------------------------------------------------------------------ issue 27's defects
@pytest.fixture(scope="module")
def chromium():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def fresh(run_outdir: Path, tmp_path: Path) -> Iterator[Server]:
    """The review app on a copy of the run of its own."""
    shutil.copytree(run_outdir, tmp_path / "out")
    with serving(tmp_path / "out") as running:
        yield running


@contextmanager
def opened(chromium, server: Server, reviewer: str = "Alice", fragment: str = "", rows: int = 1,
           size: tuple[int, int] = (1366, 768), held: list | None = None) -> Iterator:
    """A page of the review app (at 1366x768), its `rows` rows shown, its reviewer named; fails on any script
    error. With `held`, the frame images' requests are kept in it unanswered (a slow server) until the test lets
    them go."""
    from playwright.sync_api import expect

    context = chromium.new_context(viewport={"width": size[0], "height": size[1]})
    page = context.new_page()
    if held is not None:
        page.route(re.compile(r"/frame/\d+\.jpg"), lambda route: held.append(route))
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server.url + fragment)
    expect(page.locator(".group")).to_have_count(rows)
    page.fill("#reviewer", reviewer)
    try:
        yield page
        assert not errors, errors
    finally:
        context.close()


def on_one_line(page, selector: str) -> None:
    """The visible items of `selector` sit on one line (a wrapped bar pushes the player down at 1366x768)."""
    middles = page.locator(selector).evaluate("""el => [...el.children].filter((e) => e.offsetParent)
        .map((e) => { const r = e.getBoundingClientRect(); return r.top + r.height / 2; })""")
    assert len(middles) > 3 and max(middles) - min(middles) < 4, (selector, middles)


def shoot(page, name: str) -> None:
    """A screenshot to look at, kept in /tmp/redact-review-27/."""
    folder = Path("/tmp/redact-review-27")
    folder.mkdir(exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"))


def release_row(page, first: int, last: int, reason: str = "not-exempt") -> None:
    """Un-redact the row over frames first..last through the dialog."""
    from playwright.sync_api import expect

    page.locator(".group .unredact").click()
    page.locator("#action-whole").uncheck()
    page.fill("#action-first", str(first))
    page.fill("#action-last", str(last))
    page.select_option("#action-reason", reason)
    page.locator("#action-ok").click()
    expect(page.locator("#action")).to_be_hidden()


def test_a_row_released_in_two_pieces_keeps_both(fresh: Server, chromium) -> None:
    """Defect 1: released 10-20, then 40-50: only 40-50 was kept, and the page said "Saved"."""
    from playwright.sync_api import expect

    track = track_id(fresh)
    with opened(chromium, fresh) as page:
        release_row(page, 10, 20)
        release_row(page, 40, 50)
        assert decisions(fresh)["tracks"] == {str(track): {"redact": False, "reason": "not-exempt",
                                                           "frames": [[10, 20], [40, 50]]}}
        expect(page.locator(".group .state")).to_have_text("partly released")
        expect(page.locator(".decisions li").first).to_contain_text("frames 10–20, 40–50")
        released = page.locator(".lane .seg.released")  # the timeline shows both pieces, where they are
        expect(released).to_have_count(2)
        assert [released.nth(i).get_attribute("title") for i in range(2)] == [
            f"track {track} released, frames 10–20 (not-exempt)", f"track {track} released, frames 40–50 (not-exempt)"]
        shoot(page, "two-pieces")
    status, body, _ = request(fresh, "GET", f"/api/v/{STEM}/boxes?first=0&last=74")
    redacted = {int(f): boxes[0]["r"] for f, boxes in json.loads(body)["frames"].items()}
    assert [f for f, r in sorted(redacted.items()) if not r] == [*range(10, 21), *range(40, 51)]


def test_the_page_says_when_a_render_is_needed(fresh: Server, chromium) -> None:
    """Defect 2: after a change since the last render the header still said "the release files are up to date"
    (and `redact release` then refused)."""
    from playwright.sync_api import expect

    from redact.errors import UserError
    from redact.review.release import check_releasable, read_log

    state = "#render-state"
    with opened(chromium, fresh) as page:
        expect(page.locator(state)).to_have_text("rendered: up to date")  # the run's own render
        release_row(page, 5, 9)
        expect(page.locator(state)).to_have_attribute("data-state", "needed")
        expect(page.locator(state)).to_contain_text("render needed")
        shoot(page, "render-needed")
        with pytest.raises(UserError, match="render first"):  # what the page says is what release finds
            check_releasable(fresh.outdir, STEM, read_log(fresh.outdir, STEM), True, None)
        page.locator("#render").click()
        expect(page.locator(state)).to_have_text("rendered: up to date", timeout=120_000)
        check_releasable(fresh.outdir, STEM, read_log(fresh.outdir, STEM), True, None)
        page.locator("#approve").click()
        page.locator("#action-ok").click()
        expect(page.locator("#approval")).to_contain_text("approved by Alice")
        expect(page.locator(state)).to_contain_text("render needed")
        page.reload()  # what the page says comes from the files, not from what this page did
        expect(page.locator(state)).to_contain_text("render needed")


def test_a_reversed_range_is_called_reversed(server: Server) -> None:
    """Defect 5: frames 60-20 were reported as "outside the video's 0..74"."""
    body = json.dumps({"op": "add", "list": "frame_ranges", "value": {"frames": [60, 20], "mode": "fill", "reason": "b6"},
                       "base": head(server), "by": "Bob"}).encode()
    status, text, _ = request(server, "POST", f"/api/v/{STEM}/decisions", headers=JSON, body=body)
    assert status == 400 and b"are reversed: the first frame comes after the last" in text and b"outside" not in text


def test_the_reason_prompt_goes_once_a_reason_is_chosen(fresh: Server, chromium) -> None:
    """Defect 5: "Choose the reason code" stayed in the dialog after a reason was chosen."""
    from playwright.sync_api import expect

    with opened(chromium, fresh) as page:
        page.locator(".group .unredact").click()
        page.locator("#action-ok").click()
        expect(page.locator("#action-error")).to_have_text("Choose the reason code for this decision.")
        page.select_option("#action-reason", "not-exempt")
        expect(page.locator("#action-error")).to_be_hidden()


def test_a_reload_reopens_the_video_named_in_the_address(fresh: Server, chromium) -> None:
    """Defect 5: a reload always opened the first video (#v=street was ignored)."""
    from playwright.sync_api import expect

    shutil.copy(plan_path(fresh.outdir, STEM), plan_path(fresh.outdir, "street"))  # a second video: its plan
    with opened(chromium, fresh, fragment="#v=street") as page:
        expect(page.locator("#video")).to_have_value("street")
        page.select_option("#video", STEM)
        expect(page.locator("#video")).to_have_value(STEM)
        assert page.url.endswith(f"/#v={STEM}") and "token" not in page.url
        page.select_option("#video", "street")
        wait_until(page, "location.hash === '#v=street'")
        page.reload()
        expect(page.locator(".group")).to_have_count(1)
        expect(page.locator("#video")).to_have_value("street")


def test_a_message_does_not_move_the_page(fresh: Server, chromium) -> None:
    """Defect 5: the message banner pushed everything under it down when it appeared."""
    from playwright.sync_api import expect

    with opened(chromium, fresh, reviewer="") as page:
        wait_until(page, "(f => f.complete && f.naturalWidth > 0)(document.getElementById('frame'))")
        before = page.locator("main").bounding_box()  # measured once the frame has its size
        page.locator(".group .unredact").click()  # no reviewer's name: a message says so
        expect(page.locator("#message")).to_contain_text("Enter your name")
        shoot(page, "message")
        assert page.locator("main").bounding_box() == before
        page.locator("#message").click()
        expect(page.locator("#message")).to_be_hidden()


def split_track(outdir: Path, parts: int) -> list[int]:
    """The plan's one face track cut into `parts` tracks of consecutive frames, one review row (as the tracker
    leaves a face it loses and finds again); returns their ids."""
    import sqlite3

    db = sqlite3.connect(plan_path(outdir, STEM))
    with db:
        (track, cls, first, last, group), = db.execute("SELECT id, cls, first, last, grp FROM tracks")
        cuts = np.linspace(first, last + 1, parts + 1).astype(int)
        db.execute("DELETE FROM tracks")
        ids = []
        for n, (a, b) in enumerate(zip(cuts[:-1], cuts[1:] - 1, strict=True)):
            tid = track + 100 + n
            db.execute("UPDATE boxes SET track = ? WHERE frame BETWEEN ? AND ?", (tid, int(a), int(b)))
            detections, best, mean, at = db.execute(
                "SELECT count(*), max(score), avg(score), (SELECT frame FROM boxes WHERE track = ? ORDER BY score DESC "
                "LIMIT 1) FROM boxes WHERE track = ?", (tid, tid)).fetchone()
            db.execute("INSERT INTO tracks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (tid, cls, int(a), int(b), detections, best, mean, at, group))
            ids.append(tid)
    db.close()
    return ids


def test_a_row_is_one_decision_with_one_undo(fresh: Server, chromium) -> None:
    """Defect 4: un-redacting a row of 13 tracks listed 13 "Track N released" decisions, each with an Undo."""
    from playwright.sync_api import expect

    ids = split_track(fresh.outdir, 13)
    with opened(chromium, fresh) as page:
        expect(page.locator("#group-count")).to_have_text("1 row, 13 tracks · 0 need a look")
        page.locator(".group .unredact").click()
        page.select_option("#action-reason", "not-exempt")
        page.locator("#action-ok").click()
        expect(page.locator(".group .state")).to_have_text("released")
        lines = page.locator(".decisions li")
        expect(lines).to_have_count(1)
        expect(lines).to_contain_text("Face row")
        expect(lines).to_contain_text("(13 tracks) released, all frames")
        assert "Track" not in lines.inner_text()
        expect(page.locator("#history")).to_have_text("1 change in the history")
        shoot(page, "row-of-13")
        lines.locator("button", has_text="Undo").click()
        expect(page.locator("#action-text")).to_have_text("Back to the automatic redaction for its 13 tracks.")
        page.locator("#action-ok").click()
        expect(page.locator(".group .state")).to_have_text("redacted")
        expect(page.locator("#history")).to_have_text("2 changes in the history")
    history = decisions(fresh)["history"]
    assert [sorted(e["op"]["ids"]) for e in history] == [ids, ids] and decisions(fresh)["tracks"] == {}


def test_a_page_learns_of_another_reviewers_change(fresh: Server, chromium) -> None:
    """Defect 3: a second browser kept showing "approved by ..." after another reviewer's change withdrew the
    approval; it learnt of it only on its own write's 409, whose message said neither who nor what."""
    from playwright.sync_api import expect

    with opened(chromium, fresh, "Alice") as alice, opened(chromium, fresh, "Carol") as carol:
        alice.locator("#approve").click()
        alice.locator("#action-ok").click()
        expect(alice.locator("#approval")).to_contain_text("approved by Alice")
        expect(carol.locator("#approval")).to_contain_text("approved by Alice", timeout=6000)  # without a reload
        read = head(fresh)
        status, _, _ = request(fresh, "POST", f"/api/v/{STEM}/decisions", headers=JSON, body=json.dumps(
            {"op": "add", "list": "frame_ranges", "value": {"frames": [70, 74], "mode": "blur", "reason": "b7c"},
             "base": read, "by": "Bob"}).encode())
        assert status == 200
        for page in (alice, carol):
            expect(page.locator("#approval")).to_have_text("not approved", timeout=6000)
            expect(page.locator("#message")).to_have_text(
                "Bob added frame range f1. Alice's approval is withdrawn.")
            expect(page.locator(".decisions li")).to_have_count(1)
        shoot(carol, "learnt-of-bob")
        # a write based on what was read before: refused, and the refusal says who changed what, as a sentence
        status, body, _ = request(fresh, "POST", f"/api/v/{STEM}/decisions", headers=JSON, body=json.dumps(
            {"op": "unapprove", "base": read, "by": "Carol"}).encode())
        assert status == 409 and body.decode() == "Bob added frame range f1, after this page read the decisions."


@pytest.fixture(scope="module")
def crowd_clip(tmp_path_factory):
    """A generated clip of many small, moving faces with its truth (the leak benchmark's first face clip, 60
    frames)."""
    from benchmarks.synth import clip_specs, load_photos, make_clip

    spec = clip_specs("faces", 3, 60, 1280, 720, seed=0)[0]
    return make_clip(spec, load_photos("faces"), tmp_path_factory.mktemp("crowd-clip"))


@pytest.fixture(scope="module")
def crowd_run(redactor, crowd_clip, tmp_path_factory) -> Path:
    """A real run on the crowd clip: dozens of rows, some confident, some weak or lone."""
    out = tmp_path_factory.mktemp("crowd") / "out"
    redactor.run(crowd_clip.video, out, stem="crowd")
    return out


def rows_in_order(page) -> list[int]:
    return [int(x) for x in page.locator(".group").evaluate_all("els => els.map(e => e.dataset.group)")]


@pytest.mark.parametrize("size", [(1366, 768), (1920, 1080)])
def test_triage_shows_the_doubtful_rows_and_accepts_the_confident_ones_at_once(crowd_run: Path, tmp_path: Path,
                                                                              chromium, size) -> None:
    """Issue 27, triage: rows marked "needs a look" (weak or lone) are those `Group.doubts` names; a filter shows
    them alone, a sort puts the weakest first; one step keeps every confident row redacted with one reason, and
    one bulk action releases the selected rows; each is one entry in the history."""
    from playwright.sync_api import expect

    shutil.copytree(crowd_run, tmp_path / "out")
    with Plan(plan_path(tmp_path / "out", "crowd")) as plan:
        groups = {g.id: g for g in plan.groups()}
    look = [g for g in groups.values() if g.doubts]
    confident = [g for g in groups.values() if not g.doubts]
    assert len(look) >= 3 and len(confident) >= 3, (len(look), len(confident))  # both kinds on this clip
    name = "x".join(map(str, size))
    with serving(tmp_path / "out") as server, opened(chromium, server, rows=len(groups), size=size) as page:
        expect(page.locator("#group-count")).to_contain_text(f"{len(look)} need a look")
        expect(page.locator(".group .doubt")).to_have_count(len(look))
        page.select_option("#row-filter", "look")
        expect(page.locator(".group")).to_have_count(len(look))
        assert set(rows_in_order(page)) == {g.id for g in look}
        expect(page.locator("#lanes .lane")).to_have_count(len(look))  # the timeline shows the same rows
        page.select_option("#row-sort", "score")
        scores = [groups[i].max_score for i in rows_in_order(page)]
        assert scores == sorted(scores)
        shoot(page, f"triage-look-{name}")

        page.select_option("#row-filter", "all")
        page.locator("#accept-confident").click()
        expect(page.locator("#action-text")).to_contain_text(f"Keep {len(confident)} rows")
        page.select_option("#action-reason", "b7c")
        page.locator("#action-ok").click()
        expect(page.locator(".group .state.kept")).to_have_count(len(confident))
        expect(page.locator(".decisions li")).to_have_count(1)
        expect(page.locator(".decisions li")).to_contain_text(f"{len(confident)} rows kept redacted")
        expect(page.locator("#accept-confident")).to_be_disabled()

        page.select_option("#row-filter", "look")
        page.locator("#select-shown").check()
        expect(page.locator("#selected-count")).to_have_text(f"{len(look)} selected")
        page.locator("#bulk-unredact").click()
        page.select_option("#action-reason", "not-exempt")
        page.locator("#action-ok").click()
        expect(page.locator(".group .state.released")).to_have_count(len(look))
        expect(page.locator("#selected-count")).to_have_text("none selected")
        page.select_option("#row-filter", "undecided")
        expect(page.locator(".groups .empty")).to_have_text("No row is shown by this filter.")
        page.select_option("#row-filter", "all")
        shoot(page, f"triage-done-{name}")

    state = json.loads(decisions_path(tmp_path / "out", "crowd").read_text())
    assert len(state["history"]) == 2
    for g in confident:
        assert all(state["tracks"][str(t)] == {"redact": True, "reason": "b7c"} for t in g.tracks)
    for g in look:
        assert all(state["tracks"][str(t)] == {"redact": False, "reason": "not-exempt"} for t in g.tracks)


def test_a_row_joined_by_appearance_says_how_alike_its_pieces_were(two_speakers_run: Path, tmp_path: Path,
                                                                   chromium) -> None:
    """Issue 27 ("say in the row how sure the join is"): a row whose pieces were joined by appearance, further
    apart than position alone joins, says so with the similarity that joined them, and needs a look (a guess a
    person confirms); the other speaker's row says nothing of it."""
    from playwright.sync_api import expect

    shutil.copytree(two_speakers_run, tmp_path / "out")
    with Plan(plan_path(tmp_path / "out", "two")) as plan:
        a, b = plan.groups()
    assert len(a.looked) == 1 and not b.looked
    with serving(tmp_path / "out") as server, opened(chromium, server, rows=2) as page:
        meta = page.locator(".group .meta")
        expect(meta.first).to_contain_text(f"1 by look, similarity {a.looked[0]:.2f}")
        expect(meta.nth(1)).not_to_contain_text("by look")
        expect(page.locator(".group .doubt")).to_have_text(["needs a look: joined by look"])
        assert "check they are one person" in page.locator(".group .doubt").get_attribute("title")
        expect(page.locator("#group-count")).to_contain_text("1 needs a look")
        shoot(page, "row-joined-by-look")


def test_the_timeline_groups_rows_and_a_group_collapses_into_one_lane(crowd_run: Path, tmp_path: Path,
                                                                      chromium) -> None:
    """Issue 27 ("a timeline that ... collapses rows into groups"): grouped by state, the rows that need a look and
    the confident ones each have a lane holding all their tracks, opened into a lane a row; a group closed is that
    one lane; rows decided move to the "decided" group (closed at first: done work out of the way); selecting a row
    opens its group so its lane is in view; grouped by class, the faces are one lane."""
    from playwright.sync_api import expect

    shutil.copytree(crowd_run, tmp_path / "out")
    with Plan(plan_path(tmp_path / "out", "crowd")) as plan:
        groups = {g.id: g for g in plan.groups()}
    look = [g for g in groups.values() if g.doubts]
    confident = [g for g in groups.values() if not g.doubts]
    heads, rows = "#lanes .lane.head .toggle", "#lanes .lane[data-group]"
    with serving(tmp_path / "out") as server, opened(chromium, server, rows=len(groups)) as page:
        page.select_option("#lane-mode", "state")
        expect(page.locator(heads)).to_have_text([f"▾ needs a look ({len(look)} rows)",
                                                  f"▾ confident, undecided ({len(confident)} rows)"])
        expect(page.locator(rows)).to_have_count(len(groups))
        shoot(page, "timeline-groups-open")
        page.locator(heads).first.click()  # needs a look: closed into its one lane
        expect(page.locator(heads).first).to_have_text(f"▸ needs a look ({len(look)} rows)")
        assert {int(x) for x in page.locator(rows).evaluate_all("els => els.map(e => e.dataset.group)")} == {
            g.id for g in confident}
        segs = page.locator('#lanes .lane.head[data-key="look"] .seg')
        expect(segs).to_have_count(sum(len(g.tracks) for g in look))  # every track of the group, none released
        assert int(page.locator("#frame-no").input_value()) == 0  # the toggle is not a click on the timeline
        page.locator("#accept-confident").click()
        page.select_option("#action-reason", "b7c")
        page.locator("#action-ok").click()
        expect(page.locator(heads)).to_have_text([f"▸ needs a look ({len(look)} rows)",
                                                  f"▸ decided ({len(confident)} rows)"])
        expect(page.locator(rows)).to_have_count(0)
        shoot(page, "timeline-groups-closed")
        page.evaluate("document.activeElement.blur()")
        page.keyboard.press("n")  # the first row: its group opens and its lane is the selected one
        first = min(groups)
        expect(page.locator(f'#lanes .lane.sel[data-group="{first}"]')).to_have_count(1)
        expect(page.locator(rows)).to_have_count(len(look) if groups[first].doubts else len(confident))
        page.select_option("#lane-mode", "class")
        expect(page.locator(heads)).to_have_text([f"▸ faces ({len(groups)} rows)"])


def rewritten_plan(outdir: Path, extra: Callable[[np.ndarray], list[np.ndarray | None]]) -> Path:
    """The run's plan written again by PlanWriter with its one face track and tracks made from it: `extra(box)`
    gives, for each of the track's real boxes, a box per added track (None: that track has no box there)."""
    from redact.detect import Detections
    from redact.plan import PlanWriter

    with Plan(plan_path(outdir, STEM)) as plan:
        (track,) = plan.tracks()
        boxes = plan.track_boxes(track.id)
        meta = {k: v for k, v in plan.meta.items() if k not in ("version", "speech", "joined_by_overlap")}
        times = plan.db.execute("SELECT frame, pts FROM frames ORDER BY frame").fetchall()
    target = outdir / "again"
    target.mkdir()
    writer = PlanWriter(plan_path(target, STEM))
    entries: dict[int, dict] = {}
    for frame, pts in times:
        at = boxes.at(frame)
        xyxy, ids = list(at.xyxy), [track.id] * len(at)
        for n, box in enumerate(extra(at.xyxy[0]) if len(at) else []):
            if box is not None:
                xyxy.append(box)
                ids.append(track.id + 1 + n)
        for tid in ids:
            e = entries.setdefault(tid, {"id": tid, "class": "face", "first_frame": frame, "detections": 0,
                                         "max_score": 0.9, "mean_score": 0.9})
            e["last_frame"], e["detections"] = frame, e["detections"] + 1
        writer.add(frame, pts, Detections(np.array(xyxy, np.float32).reshape(-1, 4), np.full(len(xyxy), 0.9),
                                          np.zeros(len(xyxy), np.int64), np.array(ids)))
    writer.finish(meta, entries.values(), None)
    return writer.publish()


def test_tracks_on_one_face_at_once_are_one_row(run_outdir: Path, tmp_path: Path) -> None:
    """Issue 27, fewer rows: a second track on the same head (a smaller box inside the face's, on half its frames,
    as on vtest.avi) joins the face's row and the row says so; a face beside it (no overlap) stays its own row."""
    shutil.copytree(run_outdir, tmp_path / "out")

    def extra(box: np.ndarray) -> list[np.ndarray | None]:
        w = box[2] - box[0]
        inner = box + np.array([0.1, 0.1, -0.1, -0.1]) * w  # IoU 0.64 with the face's box
        beside = box + np.array([1.05, 0, 1.05, 0]) * w  # the next face in a row of people: IoU 0
        extra.n += 1
        return [inner if extra.n % 2 else None, beside]

    extra.n = 0
    with Plan(rewritten_plan(tmp_path / "out", extra)) as plan:
        groups = plan.groups()
        tracks = plan.tracks()
    assert len(tracks) == 3
    assert [len(g.tracks) for g in groups] == [2, 1]
    assert groups[0].overlapping == 1 and groups[1].overlapping == 0
    assert groups[0].tracks == (tracks[0].id, tracks[0].id + 1)


def test_undo_takes_back_the_reviewers_own_last_changes_and_replays(tmp_path: Path) -> None:
    """Ctrl+Z's operation: each kind of change is taken back exactly (state as before it, approval withdrawn
    unless the approval itself is undone), one after another; someone else's later change stops it; the history
    with its undo entries replays to the same state when the file is loaded again."""
    from redact.review.decisions import Bounds, Conflict, Decisions, load, load_reasons

    reasons, bounds = load_reasons(), Bounds(100, 640, 360, frozenset({1, 2, 3}), 10.0, frozenset({"S1"}))
    d = Decisions(tmp_path / "x.decisions.json")
    states = [json.dumps(d.state, sort_keys=True)]
    region = {"box": [10, 10, 60, 60], "follow": False, "mode": "fill", "reason": "b6"}
    ops = [{"op": "tracks", "ids": [1, 2], "value": {"redact": False, "reason": "not-exempt", "frames": [[10, 20]]}},
           {"op": "tracks", "ids": [2], "value": {"redact": False, "reason": "not-exempt", "frames": [[40, 50]]},
            "merge": True},
           {"op": "add", "list": "regions", "value": {"frames": [5, 9], **region}},
           {"op": "speakers", "label": "S1", "name": "Officer Diaz"},
           {"op": "replace", "list": "regions", "id": "r1",
            "value": {"frames": [5, 30], **region}},
           {"op": "approve"}]
    for op in ops:
        d.apply(op, "Ann", reasons, bounds)
        states.append(json.dumps(d.state, sort_keys=True))
    assert d.state["tracks"]["2"]["frames"] == [[10, 20], [40, 50]] and d.state["approved"]["by"] == "Ann"
    d.apply({"op": "undo"}, "Ann", reasons, bounds)  # the approval: back to the state it approved, unapproved
    assert json.dumps(d.state, sort_keys=True) == states[-2]
    d.apply({"op": "approve"}, "Bob", reasons, bounds)
    with pytest.raises(Conflict, match="Nothing of yours to undo: the last change is Bob approved the decisions"):
        d.apply({"op": "undo"}, "Ann", reasons, bounds)
    d.apply({"op": "undo"}, "Bob", reasons, bounds)
    for n in range(len(ops) - 1, 1, -1):  # Ann's changes 5 to 2, last first: each gives the state before it
        entry = d.apply({"op": "undo"}, "Ann", reasons, bounds)
        assert entry["op"]["n"] == n and json.dumps(d.state, sort_keys=True) == states[n - 1], n
    assert d.state["tracks"] == {"1": ops[0]["value"], "2": ops[0]["value"]} and d.state["regions"] == []
    assert d.history[-1]["op"]["what"] == "Ann released track 2, frames 40-50"
    d.save()
    again, outside = load(d.path, reasons, bounds)
    assert not outside and again.state == d.state and len(again.history) == len(d.history) == 13
    again.apply({"op": "undo"}, "Ann", reasons, bounds)
    assert again.state["tracks"] == {}
    with pytest.raises(Conflict, match="Nothing to undo"):
        again.apply({"op": "undo"}, "Ann", reasons, bounds)


def test_ctrl_z_undoes_the_last_change_on_the_page(fresh: Server, chromium) -> None:
    """Issue 27 ("undo with Ctrl+Z"): a row released in two pieces, then Ctrl+Z twice: one piece, then the
    automatic redaction again, each said in the message; a third says there is nothing to undo."""
    from playwright.sync_api import expect

    track = track_id(fresh)
    with opened(chromium, fresh) as page:
        release_row(page, 10, 20)
        release_row(page, 40, 50)
        page.keyboard.press("Control+z")
        expect(page.locator("#message")).to_contain_text("Undone: change 2")
        expect(page.locator(".decisions li").first).to_contain_text("frames 10–20")
        expect(page.locator(".decisions li").first).not_to_contain_text("40–50")
        assert decisions(fresh)["tracks"][str(track)]["frames"] == [[10, 20]]
        shoot(page, "ctrl-z")
        page.keyboard.press("Control+z")
        expect(page.locator(".group .state")).to_have_text("redacted")
        page.keyboard.press("Control+z")
        expect(page.locator("#message")).to_have_text("Not undone: Nothing to undo.")
        expect(page.locator("#history")).to_have_text("4 changes in the history")
    assert decisions(fresh)["tracks"] == {}


def test_the_large_player_zooms_and_a_region_drawn_zoomed_lands_where_it_was_drawn(fresh: Server, chromium) -> None:
    """Issue 27 ("a large player that fills the screen, zoom and pan on a frame"): `f` makes the player as large
    as the window allows; the wheel zooms at the cursor; a region drawn on the zoomed frame is stored in the
    video's pixels; 0 shows the whole frame again."""
    from playwright.sync_api import expect

    held: list = []  # no frame has arrived yet: the player's size must not wait for one
    with opened(chromium, fresh, size=(1920, 1080), held=held) as page:
        small = page.locator("#stage").bounding_box()
        page.evaluate("document.activeElement.blur()")  # shortcuts are off while typing in a field
        page.keyboard.press("f")
        expect(page.locator("#large")).to_have_class(re.compile(r"\bon\b"))
        large = page.locator("#stage").bounding_box()
        assert large["width"] > 1.4 * small["width"] and large["y"] + large["height"] < 1080, (small, large)
        center = (large["x"] + large["width"] / 2, large["y"] + large["height"] / 2)
        page.mouse.move(*center)
        page.mouse.wheel(0, -400 * np.log(2))  # 2x at the cursor: the frame's centre stays under it
        expect(page.locator("#zoom-badge")).to_have_text("2.0x · 0: whole frame")
        page.locator("#draw").click()
        page.mouse.move(*center)
        page.mouse.down()
        page.mouse.move(center[0] + 100, center[1] + 80, steps=4)
        page.mouse.up()
        expect(page.locator("#action")).to_be_visible()
        page.select_option("#action-reason", "home-interior")
        page.locator("#action-ok").click()
        expect(page.locator("#action")).to_be_hidden()
        per_px = 360 / (2 * large["width"])  # video pixels per screen pixel at 2x
        box = decisions(fresh)["regions"][0]["box"]
        assert np.allclose(box, [180, 144, 180 + 100 * per_px, 144 + 80 * per_px], atol=2), box
        assert held, "the frame requests were not held"
        for route in held:
            route.continue_()
        page.unroute(re.compile(r"/frame/\d+\.jpg"))
        expect(page.locator("#frame")).to_have_attribute("data-frame", "0")
        assert page.locator("#stage").bounding_box() == large  # the frame's arrival moves nothing
        shoot(page, "large-zoomed-1920")
        page.keyboard.press("0")
        expect(page.locator("#zoom-badge")).to_be_hidden()
        assert page.locator("#overlay").bounding_box()["width"] == pytest.approx(large["width"], abs=1)
        # z: the selected row's face, large in the middle
        page.keyboard.press("n")
        expect(page.locator(".group.sel")).to_have_count(1)
        page.keyboard.press("z")
        expect(page.locator("#zoom-badge")).to_be_visible()
        frame = int(page.locator("#frame").get_attribute("data-frame"))
        _, body, _ = request(fresh, "GET", f"/api/v/{STEM}/boxes?first={frame}&last={frame}")
        x1, y1, x2, y2 = json.loads(body)["frames"][str(frame)][0]["b"]
        shown = page.locator("#overlay").bounding_box()
        k = shown["width"] / 360
        assert shown["x"] + k * (x1 + x2) / 2 == pytest.approx(center[0], abs=2)
        assert shown["y"] + k * (y1 + y2) / 2 == pytest.approx(center[1], abs=2)
        assert k * (x2 - x1) > 0.3 * large["width"] or k * (y2 - y1) > 0.3 * large["height"]
        shoot(page, "zoomed-to-row-1920")
        # the timeline zooms in time at the cursor: a click at its left edge is then a frame well inside the video
        lanes = page.locator("#lanes").bounding_box()
        page.mouse.move(lanes["x"] + lanes["width"] / 2, lanes["y"] + 5)
        page.mouse.wheel(0, -400 * np.log(4))
        expect(page.locator("#timeline")).to_have_class(re.compile(r"\bzoomed\b"))
        page.mouse.click(lanes["x"] + 1, lanes["y"] + 5)
        assert 25 <= int(page.locator("#frame-no").input_value()) <= 30  # 75 frames, 20 shown around 37
        page.select_option("#lane-mode", "class")
        expect(page.locator("#lanes .lane .label")).to_have_text(["▸ faces (1 row)", "regions"])
        shoot(page, "timeline-zoomed-1920")


def test_a_scripted_reviewer_does_the_standard_task_from_the_page(crowd_run: Path, crowd_clip, tmp_path: Path,
                                                                   chromium) -> None:
    """Issue 27's standard task (benchmarks/review_task.py: the benchmark runs it on 60 s of footage), here on the
    crowd clip, with a missed face in place of the missed plate: every face of one person un-redacted, two ranges of
    another released by dragging along its lane, a region drawn over a missed face and followed, approve, render,
    and release from the page. Under 25 actions; what is on disk is what was asked; the package verifies; the
    region covers the missed face on every frame it was drawn for."""
    from benchmarks.review_task import check, do_task, plan_task

    shutil.copytree(crowd_run, tmp_path / "out")
    truth = crowd_clip.truth
    with Plan(plan_path(tmp_path / "out", "crowd")) as plan:
        task = plan_task(plan, truth, {int(o): "face" for o in np.unique(truth.obj)}, missed="face")
    releases = tmp_path / "releases"
    context = chromium.new_context(viewport={"width": 1366, "height": 768})
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        with serving(tmp_path / "out", reviewer="Records Officer", releases=releases) as server:
            reviewer = do_task(page, server, task, case="PRR-7", requester="A. Requester",
                               shots=Path("/tmp/redact-review-27/task"))
            outcome = check(server, "crowd", task, truth, releases)
    finally:
        context.close()
    assert not errors, errors
    assert len(reviewer.actions) < 25, reviewer.actions
    assert outcome["named_released_whole"], outcome
    assert outcome["partial_ranges_off_by"] <= max(1, reviewer.frames_a_pixel), (outcome["partial_ranges"], task.ranges)
    assert outcome["regions"] == 1 and outcome["approved"], outcome
    assert outcome["package"] == "PRR-7-crowd.zip" and outcome["package_verified"], outcome
    cover = outcome["missed_cover"]
    assert cover["frames"] == task.missed.last - task.missed.first + 1 and cover["min"] >= 0.9, (cover, task.missed)


def test_a_box_fixed_on_two_frames_is_one_fix_with_two_keyframes(fresh: Server, chromium) -> None:
    """Issue 27 ("fix boxes"): with a row selected, Fix box (or b) and a drag redraw its box on the frame; the fix
    covers the track's frames; a fix on a second frame is a keyframe of the same fix; the boxes API, the outline
    (labelled "fixed", the detector's box faint beneath) and the Decisions list show it."""
    from playwright.sync_api import expect

    from benchmarks.review_task import on_frame

    def boxes_at(frame: int) -> dict:
        _, body, _ = request(fresh, "GET", f"/api/v/{STEM}/boxes?first={frame}&last={frame}")
        return json.loads(body)["frames"][str(frame)][0]

    def redraw(frame: int, grow: float) -> list[float]:
        page.fill("#frame-no", str(frame))
        page.press("#frame-no", "Enter")
        wait_until(page, f"S.shown === {frame}")
        page.evaluate("document.activeElement.blur()")
        page.keyboard.press("b")
        x1, y1, x2, y2 = boxes_at(frame)["b"]
        drawn = [x1, max(2.0, y1 - grow * (y2 - y1)), x2, y2]
        page.mouse.move(*on_frame(page, drawn[0], drawn[1]))
        page.mouse.down()
        page.mouse.move(*on_frame(page, drawn[2], drawn[3]), steps=6)
        page.mouse.up()
        expect(page.locator("#action-title")).to_have_text("Fix the box of face row 2")
        expect(page.locator("#action-reason-row")).to_be_hidden()
        page.locator("#action-ok").click()
        expect(page.locator("#action")).to_be_hidden()
        return drawn

    track = track_id(fresh)
    with opened(chromium, fresh) as page:
        on_one_line(page, "header")
        page.evaluate("document.getElementById('frame-last').textContent = '107999'")  # an hour at 30 frames/s
        on_one_line(page, ".controls")
        page.evaluate("document.activeElement.blur()")
        page.keyboard.press("b")  # no row selected: it says so, nothing to draw
        expect(page.locator("#message")).to_have_text("Select the row whose box to fix first.")
        page.locator(".group").click()
        plan_box = boxes_at(10)["b"]
        first = redraw(10, 0.4)
        fix = decisions(fresh)["fixes"]
        assert len(fix) == 1 and fix[0]["track"] == track and fix[0]["frames"] == [0, 74]
        assert fix[0]["keys"][0]["frame"] == 10 and np.allclose(fix[0]["keys"][0]["was"], plan_box, atol=0.1)
        assert np.allclose(fix[0]["keys"][0]["box"], first, atol=2), (fix, first)
        redraw(50, 0.2)
        fix = decisions(fresh)["fixes"]
        assert len(fix) == 1 and [k["frame"] for k in fix[0]["keys"]] == [10, 50]
        assert len(decisions(fresh)["history"]) == 2  # an add, then a replace adding the keyframe
        at30 = boxes_at(30)
        assert "was" in at30 and at30["b"][1] < at30["was"][1] - 5  # between the keyframes: still higher than detected
        expect(page.locator(".decisions li").first).to_contain_text("fixed, frames 0–74, 2 keyframes (x1)")
        # the row's lane shows the fix over its frames and a tick where each keyframe was drawn
        expect(page.locator("#lanes .lane[data-group] .seg.fixed")).to_have_count(1)
        ticks = page.locator("#lanes .lane[data-group] .seg.key")
        expect(ticks).to_have_count(2)
        lanes = page.locator("#lanes").bounding_box()
        for tick, frame in zip(ticks.all(), [10, 50], strict=True):
            at = tick.bounding_box()
            assert at["x"] + at["width"] / 2 == pytest.approx(lanes["x"] + lanes["width"] * (frame + 0.5) / 75, abs=2)
        shoot(page, "box-fix-on-timeline")
        page.locator(".log summary").click()  # the history, newest first, says who did what and when
        expect(page.locator("#log li")).to_have_count(2)
        when = r"^20\d\d-\d\d-\d\d \d\d:\d\d:\d\d UTC: "
        expect(page.locator("#log li").first).to_have_text(re.compile(when + "Alice changed box fix x1$"))
        expect(page.locator("#log li").last).to_contain_text("Alice added box fix x1")
        shoot(page, "box-fixed")


def test_the_audio_lane_shows_the_sound_under_what_is_bleeped(fresh: Server, chromium) -> None:
    """Issue 27 ("an audio lane"): the original sound's loudness every 0.1 s, drawn along the timeline's span, with
    the bleeped spans in red under it; a word bleeped on the page shows as red in the lane at its time."""
    from playwright.sync_api import expect

    status, body, _ = request(fresh, "GET", f"/api/v/{STEM}/loudness")
    data = json.loads(body)
    peaks = np.array(data["peaks"])
    assert status == 200 and data["step"] == 0.1 and len(peaks) == 30  # GRID clips are 3 s
    assert peaks.max() > 10 and peaks.min() < peaks.max() / 3, peaks  # speech, and quieter moments around it
    count = """(() => { const c = document.getElementById('audio-lane'), d = c.getContext('2d').getImageData(0, 0, c.width,
        c.height).data; let bars = 0, red = 0; for (let i = 0; i < d.length; i += 4) { if (d[i + 3] && d[i] > 150 &&
        d[i + 1] < 120) red++; else if (d[i + 3]) bars++; } return [bars, red, c.width]; })()"""
    with opened(chromium, fresh) as page:
        expect(page.locator("#audio-lane")).to_be_visible()
        wait_until(page, "S.loudness !== null")
        bars, red, width = page.evaluate(count)
        assert bars > 0 and red == 0 and width > 400, (bars, red, width)
        word = page.locator("#transcript .word").first
        word.click()
        page.select_option("#action-reason", "b6")
        page.locator("#action-ok").click()
        expect(page.locator("#action")).to_be_hidden()
        wait_until(page, "S.info.spans.some((s) => s.redact)")
        bars, red, width = page.evaluate(count)
        start, end = page.evaluate("[S.info.spans[0].start, S.info.spans[0].end]")
        assert red > 0.3 * (end - start) / 3.0 * width * 22, (red, start, end, width)  # the span's share of the lane
        shoot(page, "audio-lane")
