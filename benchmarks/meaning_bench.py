"""Search by meaning against words alone, on paraphrase queries written from real transcripts.

    .venv/bin/python benchmarks/meaning_bench.py                # writes benchmarks/results/meaning.json

Corpus: every line of ../shared/evaldata/speech/*/transcripts.tsv (LJSpeech, the pocketsphinx Austen reading, GRID)
as one segment each, indexed in a fresh SQLite index (one file per corpus). Queries: benchmarks/data/paraphrases.tsv,
each written by hand from one segment in other words ('typography' for 'printing', 'azure' for 'blue'); the
segment it was written from is the one relevant answer.

Rankings compared, each asked for 10 hits: words (the query as typed: every word must occur, as `redact search`),
words-any (the query's words joined by OR: a fairer words-only baseline), and hybrid (Index.search(meaning=...):
word matches first, ranked by RRF of word and meaning rank, then the nearest segments by meaning) with the
static embedder (the default) and the contextual one (the full MiniLM per segment). Reported per ranking:
recall@10 (share of queries whose segment is in the 10 hits), recall@1, MRR@10.

Exact-phrase check: for every segment, a phrase of 2-3 consecutive words from it is searched with words alone and
with hybrid; every hit the words find must be among hybrid's hits (the count of misses is reported; 0 is required).
The corpus is small (about 60 segments), so recall@10 is generous for every method: recall@1 and MRR separate them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.provenance import write_result  # noqa: E402
from redact.search import open_index, query_tokens  # noqa: E402

EVALDATA = ROOT.parent / "shared" / "evaldata"
QUERIES = ROOT / "benchmarks" / "data" / "paraphrases.tsv"
K = 10


def corpus() -> dict[str, list[str]]:
    return {folder.name: [line.split("\t", 1)[1] for line in (folder / "transcripts.tsv").read_text().splitlines()
                          if "\t" in line]
            for folder in sorted((EVALDATA / "speech").iterdir()) if (folder / "transcripts.tsv").is_file()}


def transcript(sentences: list[str], name: str) -> dict:
    """One segment per sentence, words 0.4 s apart (times do not matter here)."""
    t, segments = 0.0, []
    for k, sentence in enumerate(sentences):
        words = []
        for raw in sentence.split():
            words.append({"start": round(t, 3), "end": round(t + 0.36, 3), "word": " " + raw})
            t += 0.4
        segments.append({"id": k, "start": words[0]["start"], "end": words[-1]["end"], "text": sentence, "words": words})
        t += 1.0
    return {"file": name, "sha256": hashlib.sha256(name.encode()).hexdigest(), "duration": t, "language": "en",
            "segments": segments}


def queries() -> list[tuple[str, int, str]]:
    out = []
    for line in QUERIES.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, number, query = line.split("\t")
            out.append((name, int(number), query))
    return out


def scores(ranked: list[list[tuple[str, float]]], targets: list[tuple[str, float]]) -> dict:
    hits1 = hits10 = rr = 0.0
    for hits, target in zip(ranked, targets, strict=True):
        if target in hits[:K]:
            rank = hits.index(target) + 1
            hits10 += 1
            hits1 += rank == 1
            rr += 1 / rank
    n = len(targets)
    return {"recall@10": round(hits10 / n, 3), "recall@1": round(hits1 / n, 3), "mrr@10": round(rr / n, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "meaning.json")
    args = ap.parse_args()
    from redact.meaning import Embedder

    texts = corpus()
    asked = queries()
    result: dict = {"machine": platform.node(), "python": platform.python_version(), "queries": len(asked),
                    "segments": sum(len(v) for v in texts.values()), "rankings": {}}
    with tempfile.TemporaryDirectory() as tmp:
        indexes = {}
        for kind in ("static", "contextual"):
            t0 = time.perf_counter()
            embedder = Embedder.load(kind)
            load_s = time.perf_counter() - t0
            index = open_index(Path(tmp) / f"{kind}.sqlite")
            for name, sentences in texts.items():
                index.add(transcript(sentences, f"/{name}.mp4"), media_path=f"/{name}.mp4",
                          sha256=hashlib.sha256(name.encode()).hexdigest())
            t0 = time.perf_counter()
            index.embed(embedder)
            result[f"embed_{kind}_s"] = round(time.perf_counter() - t0, 3)
            result[f"load_{kind}_s"] = round(load_s, 3)
            indexes[kind] = (index, embedder)
        index = indexes["static"][0]
        # the target of each query: its segment's (file, start), as a hit reports it
        starts = {}
        for name, sentences in texts.items():
            t = transcript(sentences, name)
            for k, seg in enumerate(t["segments"], start=1):
                starts[(name, k)] = (f"/{name}.mp4", seg["start"])
        targets = [starts[(name, number)] for name, number, _ in asked]

        def ranked(search) -> list[list[tuple[str, float]]]:
            out = []
            for _, _, query in asked:
                # a hit by words starts at its first matching word: compare by the segment it is in
                out.append([segment_of(h) for h in search(query)])
            return out

        def segment_of(hit) -> tuple[str, float]:
            return next(s for s in starts.values() if s[0] == hit.file and s[1] <= hit.start + 1e-6
                        and not any(o[0] == hit.file and s[1] < o[1] <= hit.start + 1e-6 for o in starts.values()))

        def words_any(query: str) -> str:
            return " OR ".join(dict.fromkeys(query_tokens(query)))

        times: dict[str, list[float]] = {}

        def timed(name: str, search):
            def run(query: str):
                t0 = time.perf_counter()
                hits = search(query)
                times.setdefault(name, []).append(time.perf_counter() - t0)
                return hits
            return run

        rankings = {
            "words": timed("words", lambda q: index.search(q, limit=K)),
            "words-any": timed("words-any", lambda q: index.search(words_any(q), limit=K)),
            "hybrid-static": timed("hybrid-static", lambda q: indexes["static"][0].search(
                q, limit=K, meaning=indexes["static"][1])),
            "hybrid-contextual": timed("hybrid-contextual", lambda q: indexes["contextual"][0].search(
                q, limit=K, meaning=indexes["contextual"][1])),
        }
        for name, search in rankings.items():
            result["rankings"][name] = {**scores(ranked(search), targets),
                                        "mean_ms": round(1000 * sum(times[name]) / len(times[name]), 2)}
        misses, phrases = 0, 0
        for ix, embedder in indexes.values():
            for sentences in texts.values():
                for sentence in sentences:
                    tokens = query_tokens(sentence)
                    for size in (2, 3):
                        if len(tokens) < size:
                            continue
                        phrase = '"' + " ".join(tokens[len(tokens) // 2: len(tokens) // 2 + size]) + '"'
                        words = {(h.file, h.start) for h in ix.search(phrase, limit=K)}
                        hybrid = {(h.file, h.start) for h in ix.search(phrase, limit=K, meaning=embedder)}
                        misses += len(words - hybrid)
                        phrases += 1
        result["exact_phrase_check"] = {"phrases": phrases, "word_hits_missing_from_hybrid": misses}
        for ix, _ in indexes.values():
            ix.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_result(args.out, result, __file__)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
