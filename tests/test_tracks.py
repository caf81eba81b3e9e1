"""Every audio track of a video is kept, transcribed and bleeped (issue 16, part 4): a body camera and a second
microphone, each saying a phone number (espeak-ng, two tracks of one MP4), through run, review and render."""

from __future__ import annotations

import json
import os
import re
import shutil

import numpy as np
import pytest

from media import talking_clip
from redact.errors import UserError
from redact.plan import Plan, plan_path
from redact.review.decisions import decisions_path, load, load_reasons
from redact.review.render import bounds_of, render
from redact.review.server import Video
from redact.transcribe import iter_audio, load_asr, transcribe

STEM = "stop"
TRACK1 = "Please step out of the car. My phone number is 555 867 5309."
TRACK2 = "Dispatch, the truck is green. Call me at 212 555 0147, over."


def strings(value) -> list[str]:
    """Every string in a JSON value (keys and values), depth first."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [t for k, v in value.items() for t in (k, *strings(v))]
    if isinstance(value, list):
        return [t for v in value for t in strings(v)]
    return []


@pytest.fixture(scope="module")
def ran(tmp_path_factory, redactor):
    clip = talking_clip(tmp_path_factory.mktemp("clip") / f"{STEM}.mp4", TRACK1, more=(TRACK2,))
    out = tmp_path_factory.mktemp("run")
    return clip, out, redactor.run(clip, out)


def heard(path, stream: int) -> str:
    """What Whisper hears on audio track `stream` of `path`."""
    result = transcribe(path, load_asr("whisper-base"), stream=stream)
    return " ".join(w.word for s in result.segments for w in s.words).lower()


def tone_share(path, stream: int, start: float, end: float) -> float:
    """Share of the energy of [start, end] of audio track `stream` at the bleep's 1 kHz."""
    audio = np.concatenate([b[:, 0] for b in iter_audio(path, stream=stream)])[int(start * 16000):int(end * 16000)]
    spectrum = np.abs(np.fft.rfft(audio)) ** 2
    freqs = np.fft.rfftfreq(len(audio), 1 / 16000)
    return float(spectrum[(freqs > 950) & (freqs < 1050)].sum() / spectrum.sum())


def test_every_track_is_kept_transcribed_and_bleeped(ran):
    import av

    clip, out, result = ran
    with av.open(str(result.video)) as video:
        assert len(video.streams.audio) == 2
    first = json.loads((out / "stop.transcript.json").read_text())
    second = json.loads((out / "stop.track2.transcript.json").read_text())
    assert (first["track"], second["track"]) == (1, 2)
    assert "car" in json.dumps(first).lower() and "truck" not in json.dumps(first).lower()
    assert "truck" in json.dumps(second).lower() and "car" not in json.dumps(second).lower()
    for transcript in (first, second):  # each track's phone number is bleeped in its own transcript
        assert [r["category"] for r in transcript["redactions"]] == ["PHONE"]
        # every text in it: not its times (a time may be 0.2125 s) nor the media's SHA-256 (it may hold "212")
        said = " ".join(t for t in strings(transcript) if not re.fullmatch(r"[0-9a-f]{64}", t))
        assert not any(d in said for d in ("5309", "0147", "867", "212"))
    # speaker labels never mean two voices: the second track numbers on from the first
    assert {s["speaker"] for s in first["segments"]} == {"S1"} and {s["speaker"] for s in second["segments"]} == {"S2"}
    assert (out / "stop.track2.srt").read_text().count("S2: ") == 1

    log = json.loads(result.log.read_text())
    assert (log["video"]["audio_tracks"], log["video"]["audio_tracks_kept"]) == (2, 2)
    assert [(t["track"], t["audio_redacted"], t["redactions"]) for t in log["audio"]["tracks"]] == [(1, True, 1), (2, True, 1)]
    assert log["audio"]["tracks"][1]["transcripts"] == [f"stop.track2{s}" for s in (".transcript.json", ".srt", ".vtt", ".txt")]
    spans = {r["track"]: r for r in log["audio"]["redactions"]}
    assert sorted(spans) == [1, 2]

    # the audio itself: each track's number is a tone in the output and speech in the original, the rest heard
    for track, span in spans.items():
        assert tone_share(result.video, track - 1, span["start"], span["end"]) > 0.5
        assert tone_share(clip, track - 1, span["start"], span["end"]) < 0.05
    one, two = heard(result.video, 0), heard(result.video, 1)
    assert "car" in one and "5309" not in one.replace("-", "") and "867" not in one
    assert "truck" in two and "0147" not in two.replace("-", "") and "212" not in two

    from redact.search import open_index

    with open_index(os.environ["REDACT_INDEX"]) as index:  # where the session's redactor indexes
        hits = index.search("truck")
    assert any(h.file == str(result.video.resolve()) and h.speaker == "S2" for h in hits)


def test_a_reviewer_decides_per_track(ran, tmp_path):
    """A bleep added on track 2 mutes track 2 only; releasing track 1's number brings it back on track 1 only;
    the review page lists every track's words and plays the tracks mixed."""
    clip, out, _ = ran
    outdir = shutil.copytree(out, tmp_path / "out")
    reasons = load_reasons()
    with Plan(plan_path(outdir, STEM)) as plan:
        bounds = bounds_of(plan)
        segments = plan.speech["segments"]
        green = next(w for s in segments if s["track"] == 2 for w in s["words"] if "green" in w["word"].lower())
        number = next(r for r in plan.speech["redactions"] if r["track"] == 1)
    assert bounds.audio_tracks == 2
    decisions, _ = load(decisions_path(outdir, STEM), reasons, bounds)
    decisions.apply({"op": "add", "list": "words", "value": {"start": green["start"], "end": green["end"], "redact": True,
                                                             "reason": "b6", "track": 2}}, "R. Officer", reasons, bounds)
    decisions.apply({"op": "add", "list": "words", "value": {"start": number["start"], "end": number["end"],
                                                             "redact": False, "reason": "not-exempt"}},
                    "R. Officer", reasons, bounds)
    with pytest.raises(UserError, match="track must be an audio track of the video, 1..2"):
        decisions.apply({"op": "add", "list": "words", "value": {"start": 1.0, "end": 2.0, "redact": True,
                                                                 "reason": "b6", "track": 3}}, "R. Officer", reasons, bounds)
    decisions.save()

    page = Video(outdir, STEM, reasons)
    info = page.info()
    assert {w["track"] for w in info["words"]} == {1, 2}
    assert [s["track"] for s in info["spans"] if s["source"] == "manual"] == [2]
    import wave

    with wave.open(str(page.audio())) as w:  # both microphones mixed for the page's player
        assert w.getnchannels() == 1 and abs(w.getnframes() / 16000 - 9.6) < 0.3

    result = render(outdir, STEM, reasons=reasons)
    first = json.loads((outdir / "stop.transcript.json").read_text())
    second = json.loads((outdir / "stop.track2.transcript.json").read_text())
    assert "green" not in json.dumps(second).lower() and "[REDACTED: b6]" in json.dumps(second)
    assert "green" not in json.dumps(first).lower() and first["redactions"] == []  # released: the number is back
    assert "867" in json.dumps(first) or "5309" in json.dumps(first)
    assert sorted(r["category"] for r in second["redactions"]) == ["PHONE", "b6"]
    one, two = heard(result.video, 0), heard(result.video, 1)
    assert "867" in one or "5309" in one.replace("-", ""), one
    assert "green" not in two and "truck" in two, two
    rows = {(e["target"], e["action"], e["reason"]) for e in result.audit["exemptions"] if e["kind"] == "audio"}
    assert any(t.startswith("words") and t.endswith("on audio track 2") and r == "b6" for t, a, r in rows), rows
    assert any(t.startswith("words") and a == "unredacted" and "track" not in t for t, a, _ in rows), rows
    assert [(t["track"], t["redactions"]) for t in result.audit["audio"]["tracks"]] == [(1, 0), (2, 2)]


def test_the_review_page_bleeps_on_the_track_of_the_word_and_names_speakers(ran, tmp_path):
    """In a real browser: each track's words under their own heading; a word clicked on track 2 is bleeped on
    track 2; a speaker chip opens the rename dialog and the name is kept in the decisions."""
    from playwright.sync_api import expect, sync_playwright

    from benchmarks.review_task import CHROMIUM_ARGS, serving

    outdir = shutil.copytree(ran[1], tmp_path / "out")
    with serving(outdir, reviewer="R. Officer") as server:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(15_000)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(server.url)
            expect(page.locator(".audio-track")).to_have_text(["Audio track 1", "Audio track 2"])
            expect(page.locator("#transcript .speaker")).to_have_text(["S1", "S2"])
            if not page.input_value("#reviewer"):
                page.fill("#reviewer", "R. Officer")

            page.locator("#transcript .word", has_text="green").click()
            expect(page.locator("#action-text")).to_contain_text("audio track 2")
            page.select_option("#action-reason", "b6")
            page.locator("#action-ok").click()
            expect(page.locator("#transcript .word.manual")).to_have_text(["green."])

            page.locator("#transcript .speaker", has_text="S2").click()
            expect(page.locator("#action-name-row")).to_be_visible()
            page.fill("#action-name", "Dispatch")
            page.locator("#action-ok").click()
            expect(page.locator("#transcript .speaker.named")).to_have_text(["Dispatch"])
            page.screenshot(path=str(tmp_path / "tracks.png"), full_page=True)
            browser.close()
        assert not errors, errors
    state = json.loads(decisions_path(outdir, STEM).read_text())
    assert [(w["track"], w["reason"], w["text"].strip(" .").lower()) for w in state["words"]] == [(2, "b6", "green")]
    assert state["speakers"] == {"S2": "Dispatch"}
