"""Who spoke when: every word of a transcription gets a speaker label ("S1", "S2", ... in order of first speech).

    diarize("cam.mp4", transcription)             # labels words, splits segments at speaker turns
    diarize("cam.mp4", transcription, speakers=2)  # the number of speakers fixed

Voices are told apart by Resemblyzer's speaker encoder (GE2E, a 3-layer LSTM over 40 mel bands; Apache-2.0), whose
trained weights ship inside the `resemblyzer` wheel, so nothing is fetched at run time. Its Python front end is
not used: it imports `webrtcvad`, which needs setuptools' removed `pkg_resources`, and librosa, whose first call
compiles for half a minute. The network is rebuilt here in torch and fed the same features (librosa-equivalent
mel power spectrogram, from faster-whisper's own filter bank and STFT).

Speech is cut into stretches at the pauses between words (a turn rarely changes without one), each stretch into
1.6 s windows (the encoder's training length), and each window is embedded. A stretch's voice is the mean of its
windows' vectors, as Resemblyzer embeds a whole utterance; the stretches are clustered by cosine distance (average
linkage), far steadier than single windows, which straddle turns and scatter. Without a fixed number, clusters
closer than a threshold merge, and a cluster with less speech than a minimum joins its nearest neighbour (a cough,
overlapping speech). Phone-quality audio (nothing above 4 kHz) draws every voice closer to every other and
scatters each one more, so it gets its own, stricter pair of limits (`WIDEBAND`, `NARROWBAND`). Each word then
takes the speaker nearest to the mean vector of the windows that hold it, so a turn can still change inside a
stretch; segments are split there.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from redact.errors import ModelError, UserError
from redact.transcribe import SAMPLE_RATE, Segment, Transcription, Word, iter_audio

N_MELS, N_FFT, HOP = 40, 400, 160  # 25 ms windows every 10 ms, as the encoder was trained
WINDOW_S = 1.6  # the encoder's partial-utterance length (160 frames)
STEP_S = 0.8  # windows overlap by half
TARGET_DBFS = -30.0  # every window at the loudness the encoder was trained at (its features are not log-scaled)
PAUSE_S = 0.3  # a pause between words longer than this ends a stretch
NARROWBAND_SHARE = 1e-3  # speech with less of its power above 4 kHz than this is phone quality (measured: wideband
# recordings 1.2-7%, their 8 kHz copies under 0.01%)
MAX_SPEAKERS = 20
MAX_CLUSTERED = 2000  # stretches clustered directly; beyond this a sample is clustered and the rest assigned


@dataclass(frozen=True)
class Limits:
    """When stretches are one voice: clusters closer than `threshold` (cosine distance, average linkage) merge, and a
    cluster heard for less than `min_speech_s` joins its nearest neighbour. Chosen on diarization_bench's 66
    recordings (three seeds): counts right in 33 of 33 wideband and 30 of 33 phone-quality ones."""

    threshold: float
    min_speech_s: float


WIDEBAND = Limits(0.25, 2.5)
NARROWBAND = Limits(0.21, 4.0)


class SpeakerEncoder(nn.Module):
    """Resemblyzer's VoiceEncoder network with its packaged weights: mel frames in, a unit 256-d voice vector out."""

    def __init__(self, weights: Path):
        super().__init__()
        self.lstm = nn.LSTM(N_MELS, 256, 3, batch_first=True)
        self.linear = nn.Linear(256, 256)
        state = torch.load(weights, map_location="cpu", weights_only=True)["model_state"]
        self.load_state_dict({k: v for k, v in state.items() if not k.startswith("similarity_")})
        self.eval()

    @torch.inference_mode()
    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.lstm(mels)
        raw = torch.relu(self.linear(hidden[-1]))
        return raw / raw.norm(dim=1, keepdim=True).clamp_min(1e-8)


@functools.cache
def load_encoder() -> SpeakerEncoder:
    spec = importlib.util.find_spec("resemblyzer")  # finds the package without running its __init__
    weights = Path(next(iter(spec.submodule_search_locations))) / "pretrained.pt" if spec else None
    if weights is None or not weights.is_file():
        raise ModelError("the speaker encoder's weights are missing: install the 'resemblyzer' package")
    return SpeakerEncoder(weights)


@functools.cache
def _mel_filters() -> np.ndarray:
    from faster_whisper.feature_extractor import FeatureExtractor

    return FeatureExtractor.get_mel_filters(SAMPLE_RATE, N_FFT, N_MELS).astype(np.float32)


def mel_frames(audio: np.ndarray) -> np.ndarray:
    """(frames, 40) mel power spectrogram of 16 kHz audio, as librosa.feature.melspectrogram gives it."""
    from faster_whisper.feature_extractor import FeatureExtractor

    audio = audio.reshape(-1)
    rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2))) if len(audio) else 0.0
    if rms > 1e-5:
        audio = audio * (10 ** (TARGET_DBFS / 20) / rms)
    window = np.hanning(N_FFT + 1)[:-1].astype(np.float32)
    spec = FeatureExtractor.stft(audio.astype(np.float32), N_FFT, HOP, window=window, mode="constant",
                                 return_complex=True).reshape(N_FFT // 2 + 1, -1)[:, : len(audio) // HOP]
    return (_mel_filters() @ (np.abs(spec) ** 2)).T.astype(np.float32)


def embed(clips: list[np.ndarray], batch: int = 64) -> np.ndarray:
    """One unit voice vector per clip of 16 kHz audio. A clip shorter than WINDOW_S is repeated to fill it: the
    encoder sees only that voice, where padding with the neighbouring audio would mix in the next speaker."""
    if not clips:
        return np.zeros((0, 256), np.float32)
    n = int(WINDOW_S * SAMPLE_RATE)
    filled = [np.resize(c.reshape(-1), n) if len(c) else np.zeros(n, np.float32) for c in clips]
    mels = np.stack([mel_frames(c) for c in filled])
    encoder = load_encoder()
    return np.concatenate([encoder(torch.from_numpy(mels[i:i + batch])).numpy() for i in range(0, len(mels), batch)])


def stretches(seg: Segment) -> list[tuple[float, float, list[Word]]]:
    """(start, end, words) of each run of `seg`'s words with no pause over PAUSE_S: a turn between two speakers
    almost always falls in a pause, so one stretch is nearly always one voice. A segment without words is one
    stretch."""
    if not seg.words:
        return [(seg.start, seg.end, [])]
    runs = [[seg.words[0]]]
    for prev, word in zip(seg.words, seg.words[1:], strict=False):
        if word.start - prev.end > PAUSE_S:
            runs.append([])
        runs[-1].append(word)
    return [(run[0].start, run[-1].end, run) for run in runs]


def speech_windows(start: float, end: float) -> list[tuple[float, float]]:
    """The windows covering [start, end]: the stretch itself when shorter than WINDOW_S, else WINDOW_S windows
    every STEP_S with the last one ending at `end`."""
    if end - start <= WINDOW_S:
        return [(start, end)]
    starts = [float(t) for t in np.arange(start, end - WINDOW_S, STEP_S)] + [end - WINDOW_S]
    return [(t, t + WINDOW_S) for t in starts]


def _clips(path: str | os.PathLike[str], spans: list[tuple[float, float]], stream: int = 0) -> list[np.ndarray]:
    """The audio of each (start, end) span, read in one pass over the stream, holding only what later spans need."""
    order = sorted(range(len(spans)), key=lambda i: spans[i])
    bounds = [(max(0, int(round(spans[i][0] * SAMPLE_RATE))), int(round(spans[i][1] * SAMPLE_RATE))) for i in order]
    clips: list[np.ndarray] = [np.zeros(0, np.float32)] * len(spans)
    buf, offset, k = np.zeros(0, np.float32), 0, 0  # buf holds samples [offset, offset + len(buf))
    for block in iter_audio(path, stream=stream):
        buf = np.concatenate([buf, block.reshape(-1)])
        while k < len(order) and bounds[k][1] <= offset + len(buf):
            clips[order[k]] = buf[bounds[k][0] - offset:bounds[k][1] - offset].copy()
            k += 1
        drop = min(len(buf), max(0, min((a for a, _ in bounds[k:]), default=offset + len(buf)) - offset))
        buf, offset = buf[drop:], offset + drop
    for j in range(k, len(order)):  # spans running past the end of the audio get what there is
        clips[order[j]] = buf[max(0, bounds[j][0] - offset):bounds[j][1] - offset].copy()
    return clips


def narrowband(clips: list[np.ndarray]) -> bool:
    """Whether speech at 16 kHz has (almost) nothing above 4 kHz: a phone or radio channel sampled at 8 kHz. The
    power spectrum is summed clip by clip, so an hour of speech is not copied into one array."""
    power, window = np.zeros(257), np.hanning(512)
    for clip in clips:
        frames = clip.reshape(-1)[: clip.size // 512 * 512].reshape(-1, 512)
        power += (np.abs(np.fft.rfft(frames * window, axis=1)) ** 2).sum(0)
    if not power.any():
        return False
    high = np.fft.rfftfreq(512, 1 / SAMPLE_RATE) >= 4000
    return float(power[high].sum()) < NARROWBAND_SHARE * float(power.sum())


def cluster(points: np.ndarray, seconds: np.ndarray, speakers: int | None, limits: Limits = WIDEBAND) -> np.ndarray:
    """A cluster index per unit vector (one per stretch, `seconds` long). `speakers` fixes the number; None finds
    it within `limits`."""
    from sklearn.cluster import AgglomerativeClustering

    n = len(points)
    if n <= 1 or speakers == 1:
        return np.zeros(n, int)
    sample = np.linspace(0, n - 1, min(n, MAX_CLUSTERED)).round().astype(int)
    kw = dict(n_clusters=min(speakers, len(sample))) if speakers else dict(n_clusters=None,
                                                                            distance_threshold=limits.threshold)
    fitted = AgglomerativeClustering(metric="cosine", linkage="average", **kw).fit_predict(points[sample])
    labels = nearest(points, np.stack([points[sample][fitted == k].mean(0) for k in range(fitted.max() + 1)]))
    labels[sample] = fitted  # the rest, beyond MAX_CLUSTERED, join the nearest cluster
    if not speakers:  # voices heard too briefly to be a speaker join their nearest neighbour, briefest first
        while len(kept := np.unique(labels)) > 1:
            heard = np.array([seconds[labels == k].sum() for k in kept])
            if heard.min() >= limits.min_speech_s:
                break
            brief, rest = kept[heard.argmin()], np.delete(kept, heard.argmin())
            sums = np.stack([(points[labels == k] * seconds[labels == k, None]).sum(0) for k in (brief, *rest)])
            labels[labels == brief] = rest[nearest(sums[:1], sums[1:])[0]]
    return np.unique(labels, return_inverse=True)[1]


def nearest(vectors: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    unit = centroids / np.linalg.norm(centroids, axis=1, keepdims=True).clip(1e-8)
    return np.argmax(vectors @ unit.T, axis=1)


def diarize(path: str | os.PathLike[str], result: Transcription, speakers: int | None = None, stream: int = 0,
            first: int = 1) -> None:
    """Label every word and segment of `result` (audio stream `stream` of `path`) with its speaker and split
    segments where the speaker changes. Labels start at S`first`: each audio track of a file numbers its
    speakers on from the tracks before it, so that no label means two voices."""
    if speakers is not None and not 1 <= speakers <= MAX_SPEAKERS:
        raise UserError(f"the number of speakers must be between 1 and {MAX_SPEAKERS}, not {speakers}")
    parts = [part for seg in result.segments for part in stretches(seg)]
    windows = [(j, w) for j, (a, b, _) in enumerate(parts) for w in speech_windows(a, b)]
    if not windows:
        return
    clips = _clips(path, [w for _, w in windows], stream)
    vectors = embed(clips)
    owner = np.array([j for j, _ in windows])
    points = np.zeros((len(parts), vectors.shape[1]), np.float32)
    np.add.at(points, owner, vectors)
    points /= np.linalg.norm(points, axis=1, keepdims=True).clip(1e-8)
    limits = NARROWBAND if narrowband(clips) else WIDEBAND
    labels = cluster(points, np.array([b - a for a, b, _ in parts]), speakers, limits)[owner]
    centroids = np.stack([vectors[labels == k].mean(0) for k in range(labels.max() + 1)])
    held = np.split(np.arange(len(owner)), np.cumsum(np.bincount(owner, minlength=len(parts)))[:-1])
    voice: dict[int, int] = {}  # id(word) -> cluster
    for (_, _, words), idx in zip(parts, held, strict=True):
        for w in words:
            mid = (w.start + w.end) / 2
            holding = [i for i in idx if windows[i][1][0] <= mid <= windows[i][1][1]]
            if not holding:
                holding = [min(idx, key=lambda i: abs(sum(windows[i][1]) / 2 - mid))]
            voice[id(w)] = int(nearest(vectors[holding].mean(0, keepdims=True), centroids)[0])
    names = {k: f"S{i + first}" for i, k in enumerate(dict.fromkeys(voice.values()))}  # numbered by first speech
    for seg in result.segments:
        for w in seg.words:
            w.speaker = names[voice[id(w)]]
    result.segments = [part for seg in result.segments for part in split_turns(seg)]


def split_turns(seg: Segment) -> list[Segment]:
    """`seg` cut where its words' speaker changes (each part keeps its share of the published words)."""
    cuts = [i for i in range(1, len(seg.words)) if seg.words[i].speaker != seg.words[i - 1].speaker]
    if not cuts:
        seg.speaker = seg.words[0].speaker if seg.words else ""
        return [seg]
    parts = []
    for a, b in zip([0, *cuts], [*cuts, len(seg.words)], strict=True):
        words = seg.words[a:b]
        ids = {id(w) for w in words}
        published = [w for w in seg.published if id(w) in ids]
        parts.append(replace(seg, start=seg.start if a == 0 else words[0].start,
                             end=seg.end if b == len(seg.words) else words[-1].end,
                             text="".join(w.word for w in published).strip(), words=words, published=published,
                             speaker=words[0].speaker))
    return parts
