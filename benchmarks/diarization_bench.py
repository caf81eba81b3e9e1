"""Who said what: speaker labels on conversations built from real recordings of different voices, turn times known.

    REDACT_HOME=~/.cache/redact .venv/bin/python -m benchmarks.diarization_bench              # writes results
    REDACT_HOME=~/.cache/redact .venv/bin/python -m benchmarks.diarization_bench --quick      # one per size

Voices (evaldata/speech, each a different person): the LJSpeech reader (32 utterances), the LibriVox reader of
pocketsphinx-testdata (5), and the 11 GRID speakers (one 3 s sentence each, repeated at each of their turns).
pocketsphinx's card-game commands are left out: its five files do not sound like one voice to the encoder (two of
them are as far from the other three as from every other corpus). A conversation of k speakers has 3 turns each in
an order where nobody speaks twice running, 0.3-0.8 s apart; a phone-quality copy (8 kHz, 300-3400 Hz) of each is
run as well. One-speaker recordings (each long reader alone, six utterances) check that one voice is not split.
Each seed (three by default) draws its own 11 conversations, 22 recordings with the phone copies.

Each conversation goes through the audio stage as `redact run` does it (faster-whisper, then redact.diarize) with
the number of speakers left to be found, and is scored against its turns:
- words right: the share of words whose speaker is the one speaking at the word's middle, after the best
  one-to-one mapping of labels to voices (Hungarian);
- DER: pyannote.metrics' diarization error rate of the labelled segments (no collar; overlaps do not occur);
- speakers found against speakers present;
- diarization time as a share of transcription time (same run).
"""

from __future__ import annotations

import argparse
import json
import time
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.provenance import write_result
from redact.transcribe import SAMPLE_RATE, iter_audio

EVALDATA = Path(__file__).resolve().parents[2] / "shared" / "evaldata" / "speech"
RESULTS = Path("benchmarks/results/diarization.json")


@dataclass
class Conversation:
    name: str
    audio: np.ndarray  # 16 kHz mono float32
    turns: list[tuple[float, float, str]]  # (start, end, voice)


def voices() -> dict[str, list[Path]]:
    found = {"ljspeech": sorted((EVALDATA / "ljspeech" / "wavs").glob("*.wav")),
             "librivox": sorted((EVALDATA / "pocketsphinx" / "librivox").glob("*.wav"))}
    for wav in sorted((EVALDATA / "grid").glob("*.wav")):
        found[f"grid-{wav.stem}"] = [wav]
    return found


def load(path: Path) -> np.ndarray:
    return np.concatenate(list(iter_audio(path))).reshape(-1)


def conversation(name: str, chosen: list[str], pool: dict[str, list[Path]], rng: np.random.Generator,
                 turns_each: int = 3) -> Conversation:
    order: list[str] = chosen * turns_each if len(chosen) == 1 else []
    while len(order) < turns_each * len(chosen):
        left = [v for v in chosen if order.count(v) < turns_each and (not order or v != order[-1])]
        order.append(str(rng.choice(left)) if left else order[-2])
    parts, turns, t, said = [], [], 0.0, {v: 0 for v in chosen}
    for voice in order:
        gap = np.zeros(int(rng.uniform(0.3, 0.8) * SAMPLE_RATE), np.float32)
        clip = load(pool[voice][said[voice] % len(pool[voice])])
        said[voice] += 1
        peak = float(np.abs(clip).max()) or 1.0
        clip = clip / peak * 0.5  # recordings at one level: a voice must not be told apart by its loudness
        parts += [gap, clip]
        t += len(gap) / SAMPLE_RATE
        turns.append((t, t + len(clip) / SAMPLE_RATE, voice))
        t += len(clip) / SAMPLE_RATE
    return Conversation(name, np.concatenate(parts + [np.zeros(SAMPLE_RATE // 2, np.float32)]), turns)


def phone(audio: np.ndarray) -> np.ndarray:
    """Telephone quality: 300-3400 Hz, sampled at 8 kHz and back (what a dispatch channel sounds like)."""
    from scipy.signal import butter, resample_poly, sosfilt

    band = sosfilt(butter(6, [300, 3400], btype="band", fs=SAMPLE_RATE, output="sos"), audio)
    return resample_poly(resample_poly(band, 1, 2), 2, 1).astype(np.float32)


def write_wav(path: Path, audio: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())


def score(conv: Conversation, words: list[tuple[float, float, str]], segments: list[tuple[float, float, str]]) -> dict:
    from pyannote.core import Annotation, Segment, Timeline
    from pyannote.metrics.diarization import DiarizationErrorRate
    from scipy.optimize import linear_sum_assignment

    def truth(t: float) -> str:
        return min(conv.turns, key=lambda turn: 0 if turn[0] <= t <= turn[1] else min(abs(t - turn[0]),
                                                                                     abs(t - turn[1])))[2]

    voices_ = sorted({v for *_, v in conv.turns})
    labels = sorted({s for *_, s in words})
    counts = np.zeros((len(labels), len(voices_)))
    for start, end, label in words:
        counts[labels.index(label), voices_.index(truth((start + end) / 2))] += 1
    rows, cols = linear_sum_assignment(-counts)
    reference, hypothesis = Annotation(), Annotation()
    for start, end, voice in conv.turns:
        reference[Segment(start, end)] = voice
    for start, end, label in segments:
        hypothesis[Segment(start, end)] = label
    uem = Timeline([Segment(0.0, len(conv.audio) / SAMPLE_RATE)])  # the whole recording is evaluated
    der = DiarizationErrorRate(collar=0.0, skip_overlap=False)(reference, hypothesis, uem=uem)
    return {"speakers": len(voices_), "found": len(labels), "words": len(words),
            "words_right": round(float(counts[rows, cols].sum() / max(1, len(words))), 4), "der": round(float(der), 4)}


def plans(pool: dict[str, list[Path]], rng: np.random.Generator, quick: bool) -> list[tuple[str, list[str]]]:
    """(name, voices) of each conversation a seed draws: 2, 3 and 4 speakers (one or two long readers, the rest
    GRID speakers), then each long reader alone."""
    long_voices = ["ljspeech", "librivox"]
    grid = [v for v in pool if v.startswith("grid-")]
    drawn = []
    for k in (2, 3, 4):
        for i in range(1 if quick else 3):
            chosen = list(rng.choice(long_voices, size=min(k - 1, 2), replace=False))
            chosen += list(rng.choice(grid, size=k - len(chosen), replace=False))
            drawn.append((f"{k}-speakers-{i + 1}", chosen))
    return drawn + [(f"1-speaker-{i + 1}", [voice]) for i, voice in enumerate(long_voices)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one conversation per size, no phone copies")
    parser.add_argument("--json", type=Path, default=RESULTS)
    parser.add_argument("--seed", type=int, nargs="+", default=[14, 7, 21],
                        help="each seed draws its own conversations (the limits were chosen on these three)")
    parser.add_argument("--keep", type=Path, help="folder to keep the conversations' WAVs in")
    args = parser.parse_args()

    import tempfile

    from redact.audio import AudioOptions
    from redact.diarize import diarize
    from redact.transcribe import load_asr, transcribe

    pool = voices()
    options = AudioOptions()
    asr = load_asr(options.asr_model, options.device)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for seed in args.seed:
            rng = np.random.default_rng(seed)
            for name, chosen in plans(pool, rng, args.quick):
                conv = conversation(name, chosen, pool, rng, turns_each=6 if len(chosen) == 1 else 3)
                for quality in ("wideband",) if args.quick else ("wideband", "phone"):
                    path = folder / f"{seed}-{name}-{quality}.wav"
                    write_wav(path, conv.audio if quality == "wideband" else phone(conv.audio))
                    t0 = time.perf_counter()
                    result = transcribe(path, asr, beam=options.beam)
                    t1 = time.perf_counter()
                    diarize(path, result)
                    t2 = time.perf_counter()
                    words = [(w.start, w.end, w.speaker) for s in result.segments for w in s.words]
                    segments = [(s.start, s.end, s.speaker) for s in result.segments]
                    row = {"seed": seed, "conversation": name, "quality": quality, "voices": chosen,
                           "seconds": round(len(conv.audio) / SAMPLE_RATE, 1), **score(conv, words, segments),
                           "transcribe_s": round(t1 - t0, 2), "diarize_s": round(t2 - t1, 2)}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    summary = {}
    for k in (1, 2, 3, 4):
        for quality in ("wideband", "phone"):
            sel = [r for r in rows if r["speakers"] == k and r["quality"] == quality]
            if sel:
                summary[f"{k} speaker{'s' if k > 1 else ''}, {quality}"] = {
                    "conversations": len(sel),
                    "words_right": round(sum(r["words_right"] * r["words"] for r in sel) / sum(r["words"] for r in sel), 4),
                    "der": round(float(np.mean([r["der"] for r in sel])), 4),
                    "right_count": sum(r["found"] == k for r in sel),
                    "found_when_wrong": [r["found"] for r in sel if r["found"] != k]}
    overhead = sum(r["diarize_s"] for r in rows) / sum(r["transcribe_s"] for r in rows)
    print("| conversations | n | words right | DER | speakers found right |\n|---|---|---|---|---|")
    for key, s in summary.items():
        print(f"| {key} | {s['conversations']} | {100 * s['words_right']:.1f}% | {100 * s['der']:.1f}% | "
              f"{s['right_count']} of {s['conversations']} |")
    print(f"diarization time / transcription time: {100 * overhead:.1f}%")
    if not args.quick:
        write_result(args.json, {"summary": summary, "diarize_over_transcribe": round(overhead, 4), "conversations": rows},
                     __file__)


if __name__ == "__main__":
    main()
