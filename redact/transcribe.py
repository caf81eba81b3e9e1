"""Speech to words with faster-whisper, streamed so that a recording of any length runs in bounded memory.

Audio is decoded with PyAV straight into 16 kHz mono float32 blocks on the media's timeline (sample 0 is media
time 0; leading gaps and packet gaps are filled with silence so word times line up with video timestamps), cut
into windows of about a minute at the quietest moment near each window's end, and each window is transcribed
on its own; word times are offset back onto the media timeline.

Whisper's failure modes and what guards against each:
- text invented over silence or noise: Silero VAD (bundled with faster-whisper) drops non-speech before decoding;
  Whisper's own no-speech / log-prob / compression-ratio thresholds retry or drop windows; segments that still
  look like hallucinations (low log-prob with high no-speech probability, gzip-compressible repetition, the
  stock "Thanks for watching" phrases over weak evidence) are marked unreliable and left out of the transcript;
- repetition loops: condition_on_previous_text=False (no failure carried from window to window), loops of a
  repeated word n-gram collapsed (a real "no, no, no" stays; dozens of copies do not);
- unbounded memory: never more than one window (plus look-ahead) of audio in memory.
Unreliable segments are still handed to PII detection by the caller: a bleep over noise costs nothing, a missed
phone number in a mumbled segment would leak.
"""

from __future__ import annotations

import functools
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from redact.errors import MediaError, ModelError, UserError
from redact.video import open_media

SAMPLE_RATE = 16000
MAX_LEAD_PAD = 30.0  # seconds of silence added before audio that starts late; later starts are taken as 0
GAP_TOLERANCE = 0.05  # packet gaps longer than this are filled with silence so later times stay right
MAX_BAD_PACKETS = 50  # isolated undecodable packets are skipped (as ffmpeg does); more means a corrupt file

HALLUCINATIONS = {
    "thank you", "thanks for watching", "thank you for watching", "thanks for watching and see you next time",
    "please subscribe", "subscribe to my channel", "like and subscribe", "you", "bye", "bye bye", "oh",
    "subtitles by the amara org community", "thank you very much", "so", "okay", "the end", "music", "applause",
}

@dataclass
class Word:
    start: float
    end: float
    word: str  # as Whisper wrote it, with its leading space and punctuation
    probability: float
    speaker: str = ""  # "S1", "S2", ... once diarized (redact.diarize)


@dataclass
class Segment:
    start: float
    end: float
    text: str
    words: list[Word]  # every word Whisper produced (PII detection and bleeping use these)
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    compression_ratio: float = 0.0
    reliable: bool = True  # False: kept for PII detection only, left out of the transcript
    published: list[Word] = field(default_factory=list)  # the words the transcript shows (loops collapsed)
    speaker: str = ""  # every word's speaker once diarized (segments are split at speaker turns)


@dataclass
class Transcription:
    language: str
    duration: float  # seconds of audio read, on the media timeline
    segments: list[Segment] = field(default_factory=list)
    # loudness (RMS) of every 10 ms of the audio: lets redaction edges snap to the pause between words, where
    # Whisper's word times (often 0.1-0.2 s off) would clip the first or last sound of a word; 1.4 MB per hour
    envelope: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))


@dataclass(frozen=True)
class AudioStreamInfo:
    codec: str
    sample_rate: int
    channels: int
    layout: str
    duration: float | None


# ------------------------------------------------------------------------------------------------ decoding
def audio_info(path: str | os.PathLike[str], stream: int = 0) -> AudioStreamInfo | None:
    """The format of audio stream `stream` (counted among the audio streams), or None when the file has no such
    stream (not an error)."""
    with open_media(path) as container:
        if len(container.streams.audio) <= stream:
            return None
        audio = container.streams.audio[stream]
        ctx = audio.codec_context
        duration = float(audio.duration * audio.time_base) if audio.duration and audio.time_base else (
            container.duration / av.time_base if container.duration else None)
        layout = ctx.layout.name if ctx.layout else ("mono" if ctx.channels == 1 else "stereo")
        return AudioStreamInfo(codec=ctx.name, sample_rate=ctx.sample_rate or 0, channels=ctx.channels or 0,
                               layout=layout, duration=duration)


def audio_streams(path: str | os.PathLike[str]) -> int:
    """How many audio streams (tracks) `path` has."""
    with open_media(path) as container:
        return len(container.streams.audio)


def iter_audio(path: str | os.PathLike[str], rate: int | None = SAMPLE_RATE, layout: str | None = "mono",
               fmt: str = "flt", stream: int = 0) -> Iterator[np.ndarray]:
    """Decoded audio of audio stream `stream` as blocks of shape (samples, channels), on the media timeline from 0.

    `rate`/`layout` None keep the stream's own. `fmt` is a packed PyAV sample format ('flt' float32, 's16').
    Audio that starts after time 0 (up to MAX_LEAD_PAD) is preceded by silence, audio stamped before 0 is
    trimmed, and gaps between packets are filled with silence, so sample n is at media time n / rate.
    """
    with open_media(path) as container:
        if len(container.streams.audio) <= stream:
            raise MediaError(f"{path}: has no audio stream" + (f" {stream + 1}" if stream else ""))
        source = container.streams.audio[stream]
        ctx = source.codec_context
        out_rate = rate or ctx.sample_rate
        out_layout = layout or (ctx.layout.name if ctx.layout else "mono")
        if not out_rate:
            raise MediaError(f"{path}: audio stream has no sample rate")
        resampler = av.AudioResampler(format=fmt, layout=out_layout, rate=out_rate)
        channels = len(av.AudioLayout(out_layout).channels)
        dtype = {"flt": np.float32, "s16": np.int16, "s32": np.int32}[fmt]
        emitted = 0  # output samples handed out so far
        trim = 0  # output samples still to drop (audio stamped before time 0)
        expected: float | None = None  # media time the next input frame should start at
        bad = 0
        decoded = 0

        def convert(frames: list[av.AudioFrame]) -> Iterator[np.ndarray]:
            nonlocal emitted, trim
            for f in frames:
                block = f.to_ndarray().reshape(-1, channels)
                if trim:
                    cut = min(trim, len(block))
                    block, trim = block[cut:], trim - cut
                if len(block):
                    emitted += len(block)
                    yield block

        def silence(seconds: float) -> Iterator[np.ndarray]:
            nonlocal emitted
            n = int(round(seconds * out_rate))
            while n > 0:
                k = min(n, out_rate * 10)
                emitted += k
                n -= k
                yield np.zeros((k, channels), dtype=dtype)

        for packet in container.demux(source):
            try:
                frames = packet.decode()
            except av.error.FFmpegError as e:
                bad += 1
                if bad > MAX_BAD_PACKETS:
                    at = f" near {float(packet.pts * packet.time_base):.1f} s" if packet.pts is not None else ""
                    raise MediaError(f"{path}: corrupt audio stream{at} ({e})") from None
                continue
            for frame in frames:
                decoded += 1
                t = float(frame.pts * frame.time_base) if frame.pts is not None and frame.time_base else None
                if expected is None:  # first frame: place it on the timeline
                    t = t or 0.0
                    if 0 < t <= MAX_LEAD_PAD:
                        yield from silence(t)
                    elif t < 0:
                        trim = int(round(-t * out_rate))
                elif t is not None and t - expected > GAP_TOLERANCE:
                    yield from silence(t - expected)
                start = t if t is not None else (expected or 0.0)
                expected = start + frame.samples / (frame.sample_rate or out_rate)
                frame.pts = None  # the resampler would otherwise insert its own silence for timestamp jumps
                yield from convert(resampler.resample(frame))
        yield from convert(resampler.resample(None))
        if decoded == 0:
            raise MediaError(f"{path}: audio stream has no decodable audio")


def windows(blocks: Iterator[np.ndarray], window: float, search: float = 10.0,
            rate: int = SAMPLE_RATE) -> Iterator[tuple[float, np.ndarray]]:
    """(start seconds, mono samples) windows of about `window` s, cut at the quietest 0.2 s of the last `search` s."""
    size, look = int(window * rate), int(search * rate)
    buf = np.zeros(0, dtype=np.float32)
    start = 0
    pending: list[np.ndarray] = []
    held = 0
    for block in blocks:
        pending.append(block.reshape(-1))
        held += len(block)
        if len(buf) + held < size + look:
            continue
        buf = np.concatenate([buf, *pending])
        pending, held = [], 0
        while len(buf) >= size + look:
            cut = _quiet_cut(buf, size - look, size + look, rate)
            yield start / rate, buf[:cut]
            buf = buf[cut:].copy()
            start += cut
    buf = np.concatenate([buf, *pending]) if pending else buf
    if len(buf):
        yield start / rate, buf


def _quiet_cut(buf: np.ndarray, lo: int, hi: int, rate: int) -> int:
    """Sample index in [lo, hi) at the middle of the quietest 0.2 s, so a cut rarely splits a word."""
    hop = rate // 50  # 20 ms
    region = buf[lo:hi]
    n = len(region) // hop
    if n < 10:
        return hi
    energy = np.square(region[: n * hop].reshape(n, hop)).mean(axis=1)
    smooth = np.convolve(energy, np.ones(10) / 10, mode="valid")  # 0.2 s
    return lo + (int(np.argmin(smooth)) + 5) * hop


# ------------------------------------------------------------------------------------------------ models
@dataclass
class AsrModel:
    model: object  # faster_whisper.WhisperModel
    pipeline: object | None  # faster_whisper.BatchedInferencePipeline on CUDA
    id: str
    sha256: str
    device: str
    english_only: bool


def pick_device(device: str) -> str:
    if device not in {"auto", "cpu", "cuda"}:
        raise UserError(f"unknown device '{device}' (choose auto, cpu or cuda)")
    if device == "auto":
        import ctranslate2

        return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    return device


def resolve_asr(model: str) -> tuple[str, str]:
    """(the folder WhisperModel loads, sha256 for the audit log) for a registry id, a local CTranslate2 folder, or a
    faster-whisper name already in the local Hugging Face cache. Runs never download: a name found nowhere here is
    refused before any work, rather than fetched from the hub unverified (or failing later on a machine offline)."""
    from redact.models import load_registry, resolve, sha256_file

    if model in load_registry() or Path(model).exists():
        path, digest, _ = resolve(model, "speech")
        if path.is_dir() and not (path / "model.bin").is_file():
            raise ModelError(f"{path}: not a CTranslate2 Whisper model folder (no model.bin)")
        return str(path), digest
    from faster_whisper.utils import _MODELS, available_models
    from huggingface_hub import snapshot_download

    if model in available_models() or model.count("/") == 1:
        try:
            folder = Path(snapshot_download(_MODELS.get(model, model), local_files_only=True))
        except Exception:  # noqa: BLE001 - not in the cache (or a malformed name): the same answer for the user
            folder = None
        if folder is not None and (folder / "model.bin").is_file():
            return str(folder), sha256_file(folder / "model.bin")
    raise ModelError(f"unknown ASR model '{model}': give a registry id (see `redact models list`), a local "
                     f"CTranslate2 model folder, or a faster-whisper name already in the local Hugging Face cache "
                     f"(redact never downloads a model at run time)")


def load_asr(model: str = "whisper-base", device: str = "cpu") -> AsrModel:
    """Load (once per process) a Whisper model: CPU int8, or CUDA float16 with the batched pipeline."""
    return _load_asr(model, pick_device(device))


@functools.lru_cache(maxsize=4)
def _load_asr(model: str, device: str) -> AsrModel:
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    source, digest = resolve_asr(model)
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        wm = WhisperModel(source, device=device, compute_type="float16" if device == "cuda" else "int8",
                          cpu_threads=threads if device == "cpu" else 0, local_files_only=True)
    except Exception as e:  # noqa: BLE001 - missing CUDA, corrupt model.bin: all one line for the user
        raise ModelError(f"could not load ASR model '{model}' on {device}: {type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''}") from None
    pipeline = BatchedInferencePipeline(model=wm) if device == "cuda" else None
    return AsrModel(model=wm, pipeline=pipeline, id=model, sha256=digest, device=device,
                    english_only=not wm.model.is_multilingual)


# ------------------------------------------------------------------------------------------------ transcription
ENVELOPE_RATE = 100  # frames per second of Transcription.envelope


def rms_envelope(audio: np.ndarray, hop: int = SAMPLE_RATE // ENVELOPE_RATE) -> np.ndarray:
    """RMS of each `hop` samples (the last, partial frame included); windows start on whole frames."""
    n = -(-len(audio) // hop)
    padded = np.zeros(n * hop, dtype=np.float32)
    padded[: len(audio)] = audio
    return np.sqrt(np.square(padded.reshape(n, hop)).mean(axis=1)).astype(np.float32)


def _compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / max(1, len(zlib.compress(data)))


def _normal(text: str) -> str:
    return " ".join("".join(c for c in text.lower() if c.isalnum() or c.isspace()).split())


def collapse_loops(words: list[Word], max_n: int = 4, repeats: int = 5, keep: int = 2) -> list[Word]:
    """Words without decoder loops: a word n-gram said more than `repeats` times back to back keeps `keep` copies.

    Real speech repeats a word a few times ("no, no, no"); Whisper stuck in a loop repeats it dozens of times.
    Only the published transcript is collapsed: PII detection and bleeping see every word Whisper produced.
    """
    out = list(words)
    for n in range(1, max_n + 1):
        result: list[Word] = []
        i = 0
        while i < len(out):
            gram = [_normal(w.word) for w in out[i:i + n]]
            k = 1
            while i + (k + 1) * n <= len(out) and [_normal(w.word) for w in out[i + k * n:i + (k + 1) * n]] == gram:
                k += 1
            if k > repeats:
                result.extend(out[i:i + keep * n])
                i += k * n
            else:
                result.append(out[i])
                i += 1
        out = result
    return out


def _judge(seg: Segment) -> bool:
    """True when the segment is trustworthy enough to publish as transcript text."""
    text = _normal(seg.text)
    if not text or not seg.published:
        return False
    if seg.avg_logprob < -1.0 and seg.no_speech_prob > 0.5:
        return False
    if seg.compression_ratio > 2.4 or seg.avg_logprob < -1.5:
        return False
    if text in HALLUCINATIONS and (seg.no_speech_prob > 0.2 or seg.avg_logprob < -0.5
                                   or max(w.probability for w in seg.published) < 0.6):
        return False
    return True


def transcribe(path: str | os.PathLike[str], asr: AsrModel, language: str | None = None,
               window: float | None = None, beam: int = 5, stream: int = 0) -> Transcription:
    """Transcribe audio stream `stream` of `path` window by window; times are media seconds. `beam` 5 is as
    accurate as plain faster-whisper; 1 (greedy) is faster and loses accuracy (`benchmarks/asr_bench.py`)."""
    if beam < 1:
        raise UserError(f"beam size must be at least 1, not {beam}")
    if language is not None:
        from faster_whisper.tokenizer import _LANGUAGE_CODES

        if language not in _LANGUAGE_CODES:
            raise UserError(f"unknown language code '{language}' (Whisper takes codes such as en, es, fr, de, zh)")
    if asr.english_only:
        if language not in (None, "en"):
            raise UserError(f"ASR model '{asr.id}' is English-only; it cannot transcribe language '{language}'")
        language = "en"
    window = window or (480.0 if asr.pipeline is not None else 60.0)
    result = Transcription(language=language or "", duration=0.0)
    samples = 0
    envelope: list[np.ndarray] = []
    for start, audio in windows(iter_audio(path, stream=stream), window):
        samples = int(start * SAMPLE_RATE) + len(audio)
        envelope.append(rms_envelope(audio))
        if float(np.abs(audio).max(initial=0.0)) < 1e-4:
            continue  # digital silence: nothing to hear, nothing for Whisper to invent
        segments, info = _run(asr, audio, language, beam)
        if language is None and segments:
            language = info.language  # detected once, on the first window with speech; fixed from then on
            result.language = language
        for s in segments:
            words = [Word(float(start + w.start), float(start + w.end), w.word, float(w.probability))
                     for w in (s.words or [])]
            published = collapse_loops(words)
            seg = Segment(start=float(start + s.start), end=float(start + s.end),
                          text="".join(w.word for w in published).strip(), words=words,
                          avg_logprob=float(s.avg_logprob), no_speech_prob=float(s.no_speech_prob),
                          compression_ratio=_compression_ratio(s.text), published=published)
            seg.reliable = _judge(seg)
            if seg.words:
                result.segments.append(seg)
    result.duration = samples / SAMPLE_RATE
    result.envelope = np.concatenate(envelope) if envelope else result.envelope
    if not result.language:
        result.language = language or "unknown"
    return result


def _run(asr: AsrModel, audio: np.ndarray, language: str | None, beam: int) -> tuple[list, object]:
    common = dict(language=language, task="transcribe", beam_size=beam, word_timestamps=True, vad_filter=True,
                  no_speech_threshold=0.6, log_prob_threshold=-1.0, compression_ratio_threshold=2.4,
                  condition_on_previous_text=False, temperature=[0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    if asr.pipeline is not None:
        segments, info = asr.pipeline.transcribe(audio, batch_size=16, **common)
    else:
        segments, info = asr.model.transcribe(audio, hallucination_silence_threshold=2.0,
                                              vad_parameters=dict(min_silence_duration_ms=500), **common)
    return list(segments), info

