"""Audio stage: transcribe, find spoken personal data, bleep it, and write the transcripts.

    result = process_audio(Path("cam.mp4"), "cam", workdir, AudioOptions())
    result.audio_path   # WAV with PII spans replaced by a 1 kHz tone (None: keep the original audio)
    result.files        # workdir/cam.transcript.{json,srt,vtt,txt}, complete, ready to be renamed into place
    result.redactions   # [{"start", "end", "category"}] for the audit log
    result.model        # {"id", "sha256"} of the ASR model

The transcript never contains the text of a redacted word: its words read "[REDACTED: PHONE]" and so on, and the
segment text is rebuilt from those words. Memory stays flat on long recordings: audio is decoded, transcribed
and bleeped as a stream (see redact.transcribe), and the redacted WAV is written block by block.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from redact import pii
from redact.diarize import MAX_SPEAKERS, diarize
from redact.errors import MediaError, UserError, partial_path, write_text_atomic
from redact.models import sha256_file
from redact.pii import ALL_CATEGORIES, CATEGORIES
from redact.transcribe import (
    ENVELOPE_RATE,
    Segment,
    Transcription,
    Word,
    audio_info,
    audio_streams,
    iter_audio,
    load_asr,
    transcribe,
)

TONE_HZ = 1000.0
TONE_LEVEL = 0.3  # about -10 dBFS: clearly a bleep, not painful
RAMP_S = 0.005  # the tone fades in and out over 5 ms (no clicks); the original is muted for the whole span
NAMED_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}
TRANSCRIPT_SUFFIXES = (".transcript.json", ".srt", ".vtt", ".txt")

__all__ = ["ALL_CATEGORIES", "CATEGORIES", "AudioOptions", "AudioResult", "process_audio", "process_tracks",
           "write_bleeped", "build_transcript", "merge_speech", "redact_words", "render", "set_media", "track_info",
           "track_stem", "write_transcripts"]


@dataclass
class AudioOptions:
    asr_model: str = "whisper-base"  # registry id, local CTranslate2 folder, or (with a network) a hub name
    language: str | None = None  # None: detected on the first window with speech
    beam: int = 5  # beam search width; 1 = greedy (faster, less accurate on CPU: benchmarks/asr_bench.py)
    device: str = "cpu"  # cpu | cuda | auto
    pii: tuple[str, ...] = ALL_CATEGORIES  # lower-case category names; () transcribes without redacting
    bleep: str = "tone"  # tone | silence
    redact_audio: bool = True  # False: keep the original audio, still transcribe and redact the transcript
    pad: float = 0.1  # seconds muted before and after each redacted word span
    speakers: int | None = None  # None: the number of speakers is found; N fixes it; 0 labels no speakers


@dataclass
class AudioResult:
    audio_path: Path | None  # redacted WAV in workdir, or None = keep the original audio
    files: list[Path]  # transcript files written into workdir with their final names
    transcript: dict | None  # the JSON object written to <stem>.transcript.json (None: no audio stream)
    redactions: list[dict] = field(default_factory=list)  # {"start", "end", "category"} for the audit log
    model: dict = field(default_factory=dict)  # {"id", "sha256"}
    speech: dict | None = None  # every word heard and the PII spans found, for the plan (`speech_record`)


def _check(options: AudioOptions) -> None:
    if options.bleep not in {"tone", "silence"}:
        raise UserError(f"unknown bleep '{options.bleep}' (choose tone or silence)")
    try:
        pii.parse_categories(options.pii)
    except ValueError as e:
        raise UserError(str(e)) from None
    if not 0 <= options.pad <= 2:
        raise UserError(f"pad must be between 0 and 2 seconds, not {options.pad}")
    if options.speakers is not None and not 0 <= options.speakers <= MAX_SPEAKERS:
        raise UserError(f"speakers must be between 1 and {MAX_SPEAKERS} (0: no speaker labels), not {options.speakers}")


def track_stem(stem: str, stream: int) -> str:
    """The name stem of audio stream `stream`'s outputs: the video's stem for the first track (cam.srt), then
    cam.track2.srt and so on."""
    return stem if stream == 0 else f"{stem}.track{stream + 1}"


def process_audio(media: Path, stem: str, workdir: Path, options: AudioOptions, *, file: str | None = None,
                  stream: int = 0, first_speaker: int = 1) -> AudioResult:
    """Transcribe audio stream `stream` of `media`, redact spoken PII in the transcript and (unless told not to)
    in a WAV copy of that track.

    `file` is what the transcript's "file" says (default: the media's name); `set_media` can change it later,
    e.g. to the published video once it exists. A file without the audio stream is not an error: the result
    has no transcript and no files. Speakers are labelled from S`first_speaker` on. Raises MediaError for
    missing, unreadable or corrupt media and ModelError for an unusable ASR model.
    """
    media, workdir = Path(media), Path(workdir)
    _check(options)
    info = audio_info(media, stream)  # MediaError for a missing or unreadable file
    asr = load_asr(options.asr_model, options.device)
    model = {"id": asr.id, "sha256": asr.sha256}
    if info is None:
        return AudioResult(audio_path=None, files=[], transcript=None, redactions=[], model=model)
    workdir.mkdir(parents=True, exist_ok=True)
    result = transcribe(media, asr, language=options.language, beam=options.beam, stream=stream)
    if options.speakers != 0:
        diarize(media, result, options.speakers, stream, first_speaker)
    categories = pii.parse_categories(options.pii)
    labels, redactions, spans = redact_words(result, categories, options.pad)
    transcript = build_transcript(file or media.name, sha256_file(media), result, model, labels, redactions,
                                  track=stream + 1)
    files = write_transcripts(transcript, workdir, stem)
    audio_path = None
    if options.redact_audio and redactions:
        audio_path = write_bleeped(media, workdir / f"{stem}.redacted-audio.wav", redactions, options.bleep, stream)
    return AudioResult(audio_path=audio_path, files=files, transcript=transcript, redactions=redactions, model=model,
                       speech=speech_record(result, model, redactions, spans))


def process_tracks(media: Path, stem: str, workdir: Path, options: AudioOptions, *, file: str | None = None
                   ) -> list[AudioResult]:
    """`process_audio` on every audio track of `media`, in order (none: []): speech on a second microphone is
    still speech. Files are named by `track_stem`; speaker labels go on numbering from track to track."""
    results: list[AudioResult] = []
    for k in range(audio_streams(media)):
        results.append(process_audio(media, track_stem(stem, k), workdir, options, file=file, stream=k,
                                     first_speaker=next_speaker(results)))
    return results


def next_speaker(done: list[AudioResult]) -> int:
    """The first speaker number free for the next audio track: S1, S2 on track 1 make track 2 start at S3, so that
    no label means two voices."""
    numbers = [int(w["speaker"][1:]) for a in done if a.speech for seg in a.speech["segments"] for w in seg["words"]
               if w.get("speaker")]
    return max(numbers, default=0) + 1


def speech_record(result: Transcription, model: dict, redactions: list[dict], spans: list[tuple[int, int]]) -> dict:
    """What the plan keeps of the speech so that `render` can bleep and rebuild transcripts without the ASR model:
    every word with its time (the unredacted text: the plan is the reviewer's, never released), which words the
    transcript publishes, and each PII span with the words it covers (`redact_words`' indices over all words)."""
    segments = []
    for seg in result.segments:
        published = {id(w) for w in seg.published}
        segments.append({"start": seg.start, "end": seg.end, "reliable": seg.reliable, "speaker": seg.speaker,
                         "words": [{"start": w.start, "end": w.end, "word": w.word, "probability": w.probability,
                                    "published": id(w) in published, "speaker": w.speaker} for w in seg.words]})
    return {"language": result.language, "duration": result.duration, "model": dict(model), "segments": segments,
            "redactions": [{**r, "words": list(span)} for r, span in zip(redactions, spans, strict=True)]}


def merge_speech(records: list[dict]) -> dict:
    """One speech record for the plan from each audio track's (`speech_record`, in track order): segments and
    spans carry their "track" (1, 2, ...), span word indices count over every track's words, and "tracks" says
    each track's language and duration. A reviewer works through all tracks as one list of words."""
    segments, redactions, tracks, offset = [], [], [], 0
    for n, record in enumerate(records, start=1):
        segments += [{**seg, "track": n} for seg in record["segments"]]
        redactions += [{**r, "track": n, "words": [r["words"][0] + offset, r["words"][1] + offset]}
                       for r in record["redactions"]]
        offset += sum(len(seg["words"]) for seg in record["segments"])
        tracks.append({"track": n, "language": record["language"], "duration": record["duration"]})
    return {"language": records[0]["language"], "duration": max(r["duration"] for r in records),
            "model": records[0]["model"], "segments": segments, "redactions": redactions, "tracks": tracks}


def track_info(speech: dict, track: int) -> dict:
    """{"track", "language", "duration"} of audio track `track` (1, 2, ...) of a plan's speech record (plans
    from before tracks hold one)."""
    return next((t for t in speech.get("tracks", []) if t["track"] == track),
                {"track": track, "language": speech["language"], "duration": speech["duration"]})


def transcription_of(speech: dict) -> Transcription:
    """The `Transcription` a plan's speech record was made from (without the loudness envelope)."""
    segments = []
    for s in speech["segments"]:
        words = [Word(w["start"], w["end"], w["word"], w["probability"], w.get("speaker", "")) for w in s["words"]]
        segments.append(Segment(s["start"], s["end"], "".join(w.word for w in words), words, reliable=s["reliable"],
                                published=[w for w, d in zip(words, s["words"], strict=True) if d["published"]],
                                speaker=s.get("speaker", "")))
    return Transcription(speech["language"], speech["duration"], segments)


SNAP_S = 0.3  # how far past the padding a redaction edge may move to reach the pause next to the word


def redact_words(result: Transcription, categories: tuple[str, ...], pad: float
                 ) -> tuple[dict[int, str], list[dict], list[tuple[int, int]]]:
    """PII labels keyed by id(word), the time spans to mute, and the words each span covers ([first, end) over
    every word of every segment, for the plan).

    Each span is the words' times widened by `pad`, and further to the quietest 10 ms within SNAP_S before
    and after, so the onset of a name or the last digit of a number is not left audible by a late word time.
    """
    words: list[Word] = [w for seg in result.segments for w in seg.words]
    labels: dict[int, str] = {}
    redactions, spans = [], []
    for span in pii.detect([w.word for w in words], categories):
        covered = words[span.start:span.end]
        for w in covered:
            labels[id(w)] = span.category
        first, last = min(w.start for w in covered), max(w.end for w in covered)
        start, end = first - pad, last + pad
        if (pause := _quietest(result.envelope, first - SNAP_S, first)) is not None:
            start = min(start, pause - 0.02)
        if (pause := _quietest(result.envelope, last, last + SNAP_S)) is not None:
            end = max(end, pause + 0.03)
        start, end = max(0.0, start), min(end, result.duration) if result.duration else end
        redactions.append({"start": round(start, 3), "end": round(end, 3), "category": span.category})
        spans.append((span.start, span.end))
    return labels, redactions, spans


def _quietest(envelope: np.ndarray, lo: float, hi: float) -> float | None:
    """Time of the quietest 30 ms in [lo, hi] of a 10 ms RMS envelope; None where the envelope has no data."""
    a, b = max(0, int(lo * ENVELOPE_RATE)), min(len(envelope), int(math.ceil(hi * ENVELOPE_RATE)))
    if b - a < 3:
        return None
    smooth = np.convolve(envelope[a:b], np.ones(3) / 3, mode="same")
    return (a + int(np.argmin(smooth)) + 0.5) / ENVELOPE_RATE


def _marker(category: str) -> str:
    return f"[REDACTED: {category}]"


def _segment_text(words: list[Word], labels: dict[int, str]) -> str:
    """The words joined, each run of redacted words of one category shown as one marker (sentence punctuation kept)."""
    parts: list[str] = []
    last = None
    for i, w in enumerate(words):
        category = labels.get(id(w))
        if category is None:
            parts.append(w.word)
        elif category != last:
            parts.append(" " + _marker(category))
        if category is not None and (i + 1 == len(words) or labels.get(id(words[i + 1])) != category):
            parts.append(w.word.strip()[-1:] if w.word.strip()[-1:] in {".", ",", "?", "!", ";", ":"} else "")
        last = category
    return "".join(parts).strip()


def build_transcript(file: str, sha256: str, result: Transcription, model: dict, labels: dict[int, str],
                     redactions: list[dict], names: dict[str, str] | None = None, track: int = 1) -> dict:
    """The transcript JSON object of audio track `track` (1, 2, ...). Segments and words carry "speaker" once
    diarized; `names` (a reviewer's renames, {"S1": "Officer Diaz"}) replace the labels they name."""
    names = names or {}
    segments = []
    for seg in (s for s in result.segments if s.reliable):
        speaker = {"speaker": names.get(seg.speaker, seg.speaker)} if seg.speaker else {}
        words = [{"start": round(w.start, 3), "end": round(w.end, 3),
                  "word": _marker(labels[id(w)]) if id(w) in labels else w.word.strip(),
                  "probability": round(w.probability, 4), "redacted": labels.get(id(w)),
                  **({"speaker": names.get(w.speaker, w.speaker)} if w.speaker else {})} for w in seg.published]
        segments.append({"id": len(segments), "start": round(seg.start, 3), "end": round(seg.end, 3), **speaker,
                         "text": _segment_text(seg.published, labels), "words": words})
    return {"file": file, "sha256": sha256, "track": track, "duration": round(result.duration, 3),
            "language": result.language, "model": dict(model), "segments": segments, "redactions": list(redactions)}


def set_media(result: AudioResult, file: str, sha256: str | None = None) -> None:
    """Point the transcript at another media file (the published video, say) and rewrite its files in place.

    The files are rewritten where they are (temporary name, then rename), so call this before moving them.
    """
    if result.transcript is None or not result.files:
        return
    result.transcript["file"] = file
    if sha256 is not None:
        result.transcript["sha256"] = sha256
    json_file = next(f for f in result.files if f.name.endswith(".transcript.json"))
    write_transcripts(result.transcript, json_file.parent, json_file.name[: -len(".transcript.json")])


# ------------------------------------------------------------------------------------------------ transcript files
def _clock(seconds: float, sep: str) -> str:
    ms = int(round(max(0.0, seconds) * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _turns(segments: list[dict]) -> list[str]:
    """Each segment's text, led by "S1: " where the speaker changes (a reader of SRT or TXT sees every turn)."""
    out, last = [], None
    for s in segments:
        speaker = s.get("speaker")
        out.append(f"{speaker}: {s['text']}" if speaker and speaker != last else s["text"])
        last = speaker
    return out


def _vtt_cue(s: dict) -> str:
    """A cue's text, in a WebVTT voice span (<v S1>) when the speaker is known; cue text may not hold < & >."""
    text = s["text"].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if not s.get("speaker"):
        return text
    return f"<v {s['speaker'].replace('>', '').replace('&', '&amp;')}>{text}"


def render(transcript: dict, kind: str) -> str:
    """The transcript as 'json', 'srt', 'vtt' or 'txt' text."""
    segments = transcript["segments"]
    if kind == "json":
        return json.dumps(transcript, ensure_ascii=False, indent=1) + "\n"
    if kind == "txt":
        return "".join(t + "\n" for t in _turns(segments))
    if kind == "srt":
        return "\n".join(f"{i + 1}\n{_clock(s['start'], ',')} --> {_clock(s['end'], ',')}\n{t}\n"
                         for i, (s, t) in enumerate(zip(segments, _turns(segments), strict=True)))
    if kind == "vtt":
        return "WEBVTT\n\n" + "\n".join(f"{_clock(s['start'], '.')} --> {_clock(s['end'], '.')}\n{_vtt_cue(s)}\n"
                                        for s in segments)
    raise ValueError(f"unknown transcript format {kind}")


def write_transcripts(transcript: dict, folder: Path, stem: str) -> list[Path]:
    """<stem>.transcript.json, .srt, .vtt, .txt in `folder`, each written under a temporary name then renamed."""
    files = []
    for suffix in TRANSCRIPT_SUFFIXES:
        kind = suffix.rsplit(".", 1)[1]
        final = folder / f"{stem}{suffix}"
        write_text_atomic(final, render(transcript, kind))
        files.append(final)
    return files


# ------------------------------------------------------------------------------------------------ bleeping
def _merge(spans: list[dict]) -> list[tuple[float, float]]:
    merged: list[list[float]] = []
    for s in sorted(spans, key=lambda s: s["start"]):
        if merged and s["start"] <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], s["end"])
        else:
            merged.append([s["start"], s["end"]])
    return [(a, b) for a, b in merged]


def write_bleeped(media: Path, out: Path, redactions: list[dict], bleep: str = "tone", stream: int = 0) -> Path:
    """Copy audio stream `stream` of `media` (own rate and channels, 24-bit PCM WAV) with each span replaced by
    tone or silence.

    24-bit, because the WAV muxer then writes a channel mask: a 16-bit mono/stereo WAV reads back with an
    unnamed layout ("1 channels") that the AAC encoder refuses. Streamed block by block; the WAV muxer switches
    to RF64 past 4 GiB (long multichannel recordings). Written under a temporary name, renamed when complete.
    """
    info = audio_info(media, stream)
    if info is None:
        raise MediaError(f"{media}: has no audio stream {stream + 1}")
    rate = info.sample_rate
    layout = NAMED_LAYOUTS.get(info.channels, info.layout) if re.fullmatch(r"\d+ channels", info.layout) else info.layout
    try:
        av.AudioLayout(layout)
    except ValueError:
        layout = NAMED_LAYOUTS.get(info.channels, "stereo")
    spans = [(int(math.floor(a * rate)), int(math.ceil(b * rate))) for a, b in _merge(redactions)]
    ramp = max(1, int(RAMP_S * rate))
    tmp = partial_path(out)
    try:
        with av.open(str(tmp), "w", format="wav", options={"rf64": "auto"}) as container:
            wav = container.add_stream("pcm_s24le", rate=rate, layout=layout)
            n0 = 0
            for block in iter_audio(media, rate=None, layout=layout, fmt="s32", stream=stream):
                n1 = n0 + len(block)
                block = _apply(block, n0, n1, spans, rate, bleep, ramp)
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block).reshape(1, -1), format="s32",
                                                   layout=layout)
                frame.sample_rate = rate
                frame.pts = n0
                frame.time_base = Fraction(1, rate)
                for packet in wav.encode(frame):
                    container.mux(packet)
                n0 = n1
            for packet in wav.encode(None):
                container.mux(packet)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out


def _apply(block: np.ndarray, n0: int, n1: int, spans: list[tuple[int, int]], rate: int, bleep: str,
           ramp: int) -> np.ndarray:
    """Replace the samples of `block` (global sample indices n0..n1) that fall inside `spans`."""
    touched = [(max(a, n0), min(b, n1), a, b) for a, b in spans if a < n1 and b > n0]
    if not touched:
        return block
    block = block.copy()
    for lo, hi, a, b in touched:
        if bleep == "silence":
            block[lo - n0:hi - n0] = 0
            continue
        n = np.arange(lo, hi)
        envelope = np.minimum(1.0, np.minimum(n - a, b - 1 - n) / ramp).clip(0.0, 1.0)
        tone = TONE_LEVEL * np.sin(2 * np.pi * TONE_HZ * n / rate) * envelope
        block[lo - n0:hi - n0] = (tone * np.iinfo(block.dtype).max).astype(block.dtype)[:, None]
    return block

