"""Speech benchmark: word error rate and speed on ../shared/evaldata/speech, and memory on a long recording.

    .venv/bin/python benchmarks/asr_bench.py                      # whisper-base on CPU int8, 2-hour recording
    .venv/bin/python benchmarks/asr_bench.py --hours 0.5 --json benchmarks/results/asr.json
    .venv/bin/python benchmarks/asr_bench.py --device cuda --model whisper-base   # on a GPU node

WER: each set's transcripts.tsv (ljspeech 32, pocketsphinx 10, grid 11 utterances), plus "ljspeech-8k": the
ljspeech set band-limited to 8 kHz sampling (phone quality); reference and hypothesis are lower-cased, hyphens
split, other punctuation stripped, then jiwer computes WER over the whole set (errors / words). Each set is
decoded three ways with the same loaded model, in the same run: plain faster-whisper at beam 5 (its own defaults
otherwise: the reference a transcript must be as good as), redact's default (`transcribe`, beam 5) and redact
with `--beam 1` (greedy, the fast option).
Speed: seconds of audio divided by seconds spent in redact.transcribe.transcribe (model loaded once beforehand).

Memory: a recording of --hours is generated on the fly as a streamed 16 kHz WAV (each minute: one real evaldata
utterance, then room-noise at -50 dBFS; never held in memory), and redact.audio.process_audio runs on it in a child
process (transcription, PII detection, transcripts, and the bleeped WAV) whose peak RSS (ru_maxrss) is reported,
next to the child's peak RSS after imports (`import redact` brings torch in) and after loading the model, so the
cost of the recording's length is visible.
The machine's load average is printed too: numbers taken while other work shares the CPU are slower than idle ones.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
import wave
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.provenance import write_result  # noqa: E402
from redact.transcribe import SAMPLE_RATE, iter_audio, load_asr, transcribe  # noqa: E402

SPEECH = ROOT.parent / "shared" / "evaldata" / "speech"


def normalise(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " ")).split())


DIGITS = "zero one two three four five six seven eight nine".split()


def digits_as_words(text: str) -> str:
    """'p2' -> 'p two', '7' -> 'seven': GRID says letters and digits, Whisper writes 'P2'."""
    text = re.sub(r"(?<=[a-z])(?=\d)|(?<=\d)(?=[a-z])", " ", text)
    return " ".join(DIGITS[int(w)] if w.isdigit() and len(w) == 1 else w for w in text.split())


def word_error_rate(refs: list[str], hyps: list[str]) -> float:
    import jiwer

    return jiwer.wer(refs, hyps)


def phone_quality(src: Path, dst: Path) -> Path:
    """`src` as an 8 kHz mono WAV (what a phone line or a cheap microphone keeps of it)."""
    from scipy.signal import resample_poly

    audio = np.concatenate(list(iter_audio(src)))[:, 0]
    narrow = np.clip(resample_poly(audio, 1, 2) * 32767, -32768, 32767).astype(np.int16)
    with wave.open(str(dst), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE // 2)
        w.writeframes(narrow.tobytes())
    return dst


def speech_sets(tmp: Path) -> dict[str, list[tuple[Path, str]]]:
    """(audio file, reference text) per set: each evaldata set, and ljspeech at 8 kHz."""
    sets = {}
    for folder in sorted(p for p in SPEECH.iterdir() if (p / "transcripts.tsv").is_file()):
        sets[folder.name] = [(folder / name, text) for name, text in
                             (line.split("\t", 1) for line in (folder / "transcripts.tsv").read_text().splitlines())]
    (tmp / "8k").mkdir()
    sets["ljspeech-8k"] = [(phone_quality(path, tmp / "8k" / f"{path.stem}.wav"), text) for path, text in sets["ljspeech"]]
    return sets


def decoders(model: str, device: str, language: str | None) -> dict[str, object]:
    """name -> f(audio file) -> (text, seconds of audio)."""
    asr = load_asr(model, device)

    def plain(path: Path) -> tuple[str, float]:
        segments, info = asr.model.transcribe(str(path), beam_size=5, language=language)
        return " ".join(s.text for s in segments), info.duration

    def ours(beam: int):
        def run(path: Path) -> tuple[str, float]:
            result = transcribe(path, asr, language=language, beam=beam)
            return " ".join(s.text for s in result.segments if s.reliable), result.duration
        return run

    return {"faster-whisper beam 5": plain, "redact default (beam 5)": ours(5), "redact --beam 1 (greedy)": ours(1)}


def bench_sets(model: str, device: str, language: str | None) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for set_name, items in speech_sets(Path(tmp)).items():
            for decoder, run in decoders(model, device, language).items():
                refs, hyps, audio_s, busy_s = [], [], 0.0, 0.0
                for path, text in items:
                    t0 = time.perf_counter()
                    heard, seconds = run(path)
                    busy_s += time.perf_counter() - t0
                    audio_s += seconds
                    refs.append(normalise(text))
                    hyps.append(normalise(heard))
                rows.append({"set": set_name, "decoder": decoder, "utterances": len(refs),
                             "words": sum(len(r.split()) for r in refs), "audio_s": round(audio_s, 1),
                             "wer": round(word_error_rate(refs, hyps), 4),
                             "wer_digits_as_words": round(word_error_rate([digits_as_words(r) for r in refs],
                                                                          [digits_as_words(h) for h in hyps]), 4),
                             "x_realtime": round(audio_s / busy_s, 2)})
                r = rows[-1]
                print(f"{set_name:14} {decoder:26} {r['utterances']:5d} {r['words']:6d} {r['audio_s']:8.1f} "
                      f"{r['wer']:7.2%} {r['wer_digits_as_words']:10.2%} {r['x_realtime']:12.2f}", flush=True)
    return rows


def utterances() -> list[np.ndarray]:
    """Every evaldata utterance as 16 kHz mono int16."""
    out = []
    for folder in sorted(p for p in SPEECH.iterdir() if (p / "transcripts.tsv").is_file()):
        for line in (folder / "transcripts.tsv").read_text().splitlines():
            blocks = list(iter_audio(folder / line.split("\t", 1)[0]))
            out.append((np.concatenate(blocks)[:, 0] * 32767).astype(np.int16))
    return out


def bench_continuous(model: str, device: str, language: str | None, beam: int) -> dict:
    """Speed on one continuous recording of every evaldata utterance back to back (~5 min of dense speech):
    the per-utterance figures above include each short file's fixed costs (opening, VAD, first window)."""
    asr = load_asr(model, device)
    speech = np.concatenate(utterances())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "all.wav"
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(SAMPLE_RATE)
            w.writeframes(speech.tobytes())
        t0 = time.perf_counter()
        result = transcribe(path, asr, language=language, beam=beam)
        busy = time.perf_counter() - t0
    return {"beam": beam, "audio_s": round(len(speech) / SAMPLE_RATE, 1), "seconds": round(busy, 1),
            "segments": len(result.segments), "x_realtime": round(len(speech) / SAMPLE_RATE / busy, 2)}


def write_recording(path: Path, hours: float, seed: int = 0) -> float:
    """A WAV of `hours`: per minute one real utterance then low room noise. Streamed: memory stays small."""
    rng = np.random.default_rng(seed)
    speech = utterances()
    total = int(hours * 3600 * SAMPLE_RATE)
    written = 0
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        minute = 0
        while written < total:
            utt = speech[minute % len(speech)][: 60 * SAMPLE_RATE]
            noise = (rng.normal(0, 0.003, 60 * SAMPLE_RATE - len(utt)) * 32767).astype(np.int16)
            block = np.concatenate([utt, noise])[: total - written]
            w.writeframes(block.tobytes())
            written += len(block)
            minute += 1
    return written / SAMPLE_RATE


def child(media: str, model: str, device: str) -> None:
    """Run in a fresh process: load the model, note RSS, run the whole audio stage, print a JSON line."""
    from redact.audio import AudioOptions, process_audio

    def rss_mb() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB

    def current_mb() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    before_load = rss_mb()
    load_asr(model, device)
    after_load = rss_mb()
    samples: list[float] = []
    stop = threading.Event()

    def sample() -> None:  # current RSS once a second: shows whether memory grows with the recording's length
        while not stop.wait(1.0):
            samples.append(current_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    start_mb = current_mb()
    with tempfile.TemporaryDirectory() as work:
        sampler.start()
        t0 = time.perf_counter()
        result = process_audio(Path(media), "long", Path(work), AudioOptions(asr_model=model, device=device))
        busy = time.perf_counter() - t0
        stop.set()
        sampler.join()
        segments = len(result.transcript["segments"])
    tenths = [round(samples[min(len(samples) - 1, int(len(samples) * q / 10))], 1) for q in range(1, 11)] if samples else []
    print(json.dumps({"rss_before_model_mb": round(before_load, 1), "rss_after_model_mb": round(after_load, 1),
                      "rss_at_start_mb": round(start_mb, 1), "rss_by_tenth_mb": tenths,
                      "peak_rss_mb": round(rss_mb(), 1),
                      "seconds": round(busy, 1), "segments": segments, "redactions": len(result.redactions)}))


def bench_long(hours: float, model: str, device: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "long.wav"
        t0 = time.perf_counter()
        duration = write_recording(path, hours)
        made = time.perf_counter() - t0
        done = subprocess.run([sys.executable, __file__, "--child", str(path), "--model", model, "--device", device],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"child failed: {done.stderr.strip()[-2000:]}")
        row = json.loads(done.stdout.strip().splitlines()[-1])
    row.update({"hours": hours, "audio_s": round(duration, 1), "wav_mb": round(duration * SAMPLE_RATE * 2 / 2**20),
                "generate_s": round(made, 1), "x_realtime": round(duration / row["seconds"], 1)})
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="whisper-base")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    parser.add_argument("--language", default="en", help="'' to let the model detect it")
    parser.add_argument("--hours", type=float, default=2.0, help="length of the generated recording (0: skip)")
    parser.add_argument("--skip-wer", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.model, args.device)
        return
    report = {"model": args.model, "device": args.device, "cpus": len(os.sched_getaffinity(0)),
              "loadavg_start": [round(x, 2) for x in os.getloadavg()]}
    if not args.skip_wer:
        print(f"{'set':14} {'decoder':26} {'utts':>5} {'words':>6} {'audio s':>8} {'WER':>7} {'WER 2=two':>10} "
              f"{'x real time':>12}")
        report["sets"] = bench_sets(args.model, args.device, args.language or None)
        report["continuous"] = []
        for beam in (5, 1):
            report["continuous"].append(c := bench_continuous(args.model, args.device, args.language or None, beam))
            print(f"continuous speech, all sets back to back, beam {beam}: {c['audio_s']} s in {c['seconds']} s = "
                  f"{c['x_realtime']}x real time")
    if args.hours > 0:
        report["long"] = r = bench_long(args.hours, args.model, args.device)
        print(f"long recording: {r['hours']} h ({r['audio_s']:.0f} s, WAV {r['wav_mb']} MB, generated in "
              f"{r['generate_s']} s): process_audio {r['seconds']} s = {r['x_realtime']}x real time, "
              f"{r['segments']} segments; peak RSS {r['rss_before_model_mb']} MB after imports, "
              f"{r['rss_after_model_mb']} MB after model load, {r['peak_rss_mb']} MB at the end; current RSS at start "
              f"{r['rss_at_start_mb']} MB, after each tenth of the run {r['rss_by_tenth_mb']} MB")
    report["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    print(f"load average start {report['loadavg_start']} end {report['loadavg_end']} on {report['cpus']} CPUs")
    if args.json:
        write_result(args.json, report, __file__)


if __name__ == "__main__":
    main()
