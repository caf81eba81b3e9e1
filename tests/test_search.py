"""Transcript search on both back ends (SQLite FTS5 and PostgreSQL), from real word timings and real transcript text.

PostgreSQL: $REDACT_TEST_PG (a URL; CI sources scripts/start_postgres.sh); without it the session starts the
throwaway server itself with that script. If that fails the PostgreSQL tests fail under CI=true and skip elsewhere,
and the session's summary ends with a red "PostgreSQL tests NOT RUN" block (conftest.pytest_terminal_summary).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import NO_POSTGRES
from redact.cli import main
from redact.errors import UserError
from redact.search import REDACTED, Hit, QueryError, open_index, parse_query

ROOT = Path(__file__).resolve().parents[1]
EVALDATA = ROOT.parent / "shared" / "evaldata"
GRID = EVALDATA / "video" / "grid"
SPEECH = EVALDATA / "speech"


@pytest.fixture(scope="session", autouse=True)
def models_ready() -> None:
    """Overrides the conftest check: search needs no detector or speech weights."""


# ------------------------------------------------------------------------------------------- transcripts


def grid_transcript() -> dict:
    """id2_vcd_swwp2s.mpg with its real GRID word alignment (times in 1/25000 s: 74500 -> 2.98 s, the clip length)."""
    words = []
    for line in (GRID / "swwp2s.align").read_text().split("\n"):
        if not line.strip():
            continue
        start, end, word = line.split()
        if word != "sil":
            words.append({"start": int(start) / 25000, "end": int(end) / 25000, "word": " " + word,
                          "probability": 1.0, "redacted": None})
    media = GRID / "id2_vcd_swwp2s.mpg"
    return {
        "file": str(media), "sha256": hashlib.sha256(media.read_bytes()).hexdigest(), "duration": 2.98,
        "language": "en", "model": {"id": "grid-align", "sha256": ""},
        "segments": [{"id": 0, "start": words[0]["start"], "end": words[-1]["end"],
                      "text": "".join(w["word"] for w in words), "words": words}],
        "redactions": [],
    }


def tsv_sentences(folder: str) -> list[str]:
    return [line.split("\t", 1)[1] for line in (SPEECH / folder / "transcripts.tsv").read_text().splitlines()
            if "\t" in line]


def synthetic_transcript(sentences: list[str], file: str, word_s: float = 0.4, gap_s: float = 1.0,
                         redact: dict[str, str] | None = None) -> dict:
    """Real text with synthetic times: each word lasts word_s, segments are gap_s apart.

    `redact` maps a word (as written) to a category: those words get `redacted` set and the segment text a marker,
    but their "word" keeps the real text, so a leak into the index would be visible.
    """
    redact = redact or {}
    t, segments, redactions = 0.0, [], []
    for k, sentence in enumerate(sentences):
        words, text = [], []
        for raw in sentence.split():
            category = redact.get(raw)
            words.append({"start": round(t, 3), "end": round(t + word_s * 0.9, 3), "word": " " + raw,
                          "probability": 0.9, "redacted": category})
            if category:
                redactions.append({"start": round(t, 3), "end": round(t + word_s * 0.9, 3), "category": category})
                marker = f"[REDACTED: {category}]"
                if not text or text[-1] != marker:
                    text.append(marker)
            else:
                text.append(raw)
            t += word_s
        segments.append({"id": k, "start": words[0]["start"], "end": words[-1]["end"], "text": " " + " ".join(text),
                         "words": words})
        t += gap_s
    return {"file": file, "sha256": hashlib.sha256(file.encode()).hexdigest(), "duration": round(t, 3),
            "language": "en", "model": {"id": "synthetic", "sha256": ""}, "segments": segments,
            "redactions": redactions}


def word_time(transcript: dict, word: str, nth: int = 0) -> float:
    found = [w["start"] for s in transcript["segments"] for w in s["words"] if w["word"].strip().lower() == word]
    return found[nth]


def add(index, transcript: dict, **kw) -> int:
    kw.setdefault("media_path", transcript["file"])
    kw.setdefault("sha256", transcript["sha256"])
    return index.add(transcript, **kw)


# ------------------------------------------------------------------------------------------- back ends


def _start_postgres() -> str:
    url = os.environ.get("REDACT_TEST_PG")
    if url:
        return url
    script = ROOT / "scripts" / "start_postgres.sh"
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=600)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines or not lines[-1].startswith("postgresql://"):
        raise RuntimeError(f"{script} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return lines[-1]


@pytest.fixture(scope="session")
def pg_url() -> str:
    try:
        return _start_postgres()
    except Exception as e:  # noqa: BLE001 - reported below, never swallowed in CI
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"PostgreSQL needed in CI: set REDACT_TEST_PG or make scripts/start_postgres.sh work: {e}")
        pytest.skip(f"{NO_POSTGRES} (set REDACT_TEST_PG): {e}")


@pytest.fixture
def pg_schema_url(pg_url: str):
    """A fresh schema per test (search_path in the URL), dropped afterwards: tests never see each other's rows."""
    import psycopg

    schema = "redact_test_" + uuid.uuid4().hex[:12]
    with psycopg.connect(pg_url, autocommit=True) as db:
        db.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in pg_url else "?"
    yield f"{pg_url}{sep}options=-csearch_path%3D{schema}"
    with psycopg.connect(pg_url, autocommit=True) as db:
        db.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgres"])
def spec(request, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "index.sqlite")
    return request.getfixturevalue("pg_schema_url")


@pytest.fixture
def index(spec: str):
    with open_index(spec) as ix:
        yield ix


# ------------------------------------------------------------------------------------------------- tests


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="module")
def real_transcripts(tmp_path_factory) -> list[dict]:
    """Transcripts from the real audio stage (whisper-tiny-en, PII redaction): the GRID clip id2_vcd_swwp2s.mpg
    (real speech with GRID's word alignment) and espeak-ng speech with a phone number in it."""
    import shutil

    from redact.models import get_spec, verify

    problems = verify(get_spec("whisper-tiny-en")) or ([] if shutil.which("espeak-ng") else ["no espeak-ng"])
    if problems:
        (pytest.fail if _in_ci() else pytest.skip)(f"real transcription needs whisper-tiny-en and espeak-ng: {problems}")
    from redact.audio import AudioOptions, process_audio

    folder = tmp_path_factory.mktemp("asr")
    call = folder / "call.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(call),
                    "Thank you for waiting. Call me back at six one seven, five five five, oh one two three."], check=True)
    options = AudioOptions(asr_model="whisper-tiny-en")
    return [process_audio(media, media.stem, folder / media.stem, options).transcript
            for media in (GRID / "id2_vcd_swwp2s.mpg", call)]


def test_real_transcripts_from_the_audio_stage(index, real_transcripts):
    grid, call = real_transcripts
    assert any(w["redacted"] == "PHONE" for s in call["segments"] for w in s["words"]), call
    add(index, grid, media_path=str(GRID / "id2_vcd_swwp2s.mpg"))
    add(index, call, media_path="/cases/asr/call.wav", tags=["asr"])
    hit = index.search("white")[0]
    assert hit.file.endswith("id2_vcd_swwp2s.mpg") and abs(hit.start - 19250 / 25000) < 1.0  # GRID: 0.77 s
    assert index.search('"set white"')[0].start < index.search("soon")[0].start
    for digits in ["six", "seven", "five", "one", "two", "three", "617", "555", "0123", "oh"]:
        assert [h for h in index.search(digits) if h.file == "/cases/asr/call.wav"] == [], digits
    hit = index.search("waiting", tag="asr")[0]
    assert 0.0 <= hit.start < 2.0 and "[REDACTED: PHONE]" in hit.text




def test_phrase_found_at_its_real_word_time(index):
    t = grid_transcript()
    assert add(index, t, tags=["grid"]) == 1
    hits = index.search('"white with"')
    assert len(hits) == 1
    hit = hits[0]
    assert isinstance(hit, Hit)
    assert hit.file == t["file"] and hit.sha256 == t["sha256"] and hit.tags == ("grid",)
    # GRID alignment: "white" 19250..27250, "with" 27250..30500 (1/25000 s)
    assert abs(hit.start - 19250 / 25000) < 1.0 and hit.start == pytest.approx(0.77, abs=1e-3)
    assert hit.end == pytest.approx(30500 / 25000, abs=1e-3)
    assert "[white with]" in hit.snippet.lower() or "[white] [with]" in hit.snippet.lower()
    assert index.search("soon")[0].start == pytest.approx(43250 / 25000, abs=1e-3)  # to the word, not the segment
    assert index.search('"with white"') == []


def test_time_to_word_inside_long_segments(index):
    t = synthetic_transcript(tsv_sentences("ljspeech"), "/cases/17/lj.mp4")
    add(index, t)
    hits = index.search('"chinese took impressions"')
    assert len(hits) == 1
    expected = word_time(t, "chinese")
    assert abs(hits[0].start - expected) < 1.0 and hits[0].start == pytest.approx(expected, abs=1e-3)
    seg = next(s for s in t["segments"] if "Chinese" in s["text"])
    assert hits[0].start > seg["start"] + 1.0  # the word, not the segment start
    assert hits[0].end == pytest.approx(word_time(t, "impressions") + 0.36, abs=1e-3)
    assert "Chinese took impressions" in hits[0].text


def test_redacted_words_never_enter_the_index(index, spec):
    sentences = ["call me back at 5550142 tonight", "the green backpack was near 5550142 and the car",
                 "officer Dashwood spoke to the driver"]
    t = synthetic_transcript(sentences, "/cases/9/bodycam.mp4", redact={"5550142": "PHONE", "Dashwood": "NAME"})
    # one more leak path: a placeholder word whose `redacted` flag was lost
    t["segments"][2]["words"][5].update(redacted=None, word=" [REDACTED: NAME]")
    # and a segment whose text redacts a word its words do not flag: the text wins
    t["segments"].append({"id": 3, "start": 30.0, "end": 32.0, "text": " ring 4440199 [REDACTED: PHONE] later",
                          "words": [{"start": 30.0 + k * 0.4, "end": 30.3 + k * 0.4, "word": " " + w,
                                     "probability": 0.9, "redacted": None}
                                    for k, w in enumerate(["ring", "me", "at", "8675309", "later"])]})
    add(index, t)
    for q in ["8675309", "867*"]:
        assert index.search(q) == [], q
    assert index.search("later")[0].start == 30.0  # no word times for that segment: its start
    assert index.search("4440199")[0].text == "ring 4440199 [REDACTED: PHONE] later"
    for q in ["5550142", "55501*", "dashwood", "dashw*", "driver", "redacted", "phone", "name"]:
        assert index.search(q) == [], q
    hits = index.search("backpack")
    assert len(hits) == 1
    assert "[REDACTED: PHONE]" in hits[0].text and "5550142" not in hits[0].text
    assert REDACTED in hits[0].snippet and "5550142" not in hits[0].snippet
    assert index.search('"back at tonight"') == []  # a phrase never matches across a redaction
    assert index.search('"call me back"')[0].start == pytest.approx(0.0)
    if not spec.startswith("postgresql://"):
        index.close()
        raw = Path(spec).read_bytes() + (Path(spec + "-wal").read_bytes() if Path(spec + "-wal").exists() else b"")
        assert b"5550142" not in raw and b"Dashwood" not in raw and b"driver" not in raw


def test_reindexing_replaces_rows(index):
    t = synthetic_transcript(tsv_sentences("pocketsphinx"), "/cases/1/a.mp4")
    add(index, t, tags=["old"])
    add(index, t, tags=["new"])
    assert index.count() == (1, len(t["segments"]))
    hits = index.search("clubs")
    assert len(hits) == 4 and {h.tags for h in hits} == {("new",)}
    # same media file (sha256) under a new path: replaces too
    add(index, t, media_path="/cases/1/moved/a.mp4")
    assert index.count() == (1, len(t["segments"]))
    assert {h.file for h in index.search("clubs")} == {"/cases/1/moved/a.mp4"}
    # same path, new content: replaces
    t2 = synthetic_transcript(tsv_sentences("grid"), "/cases/1/moved/a.mp4")
    add(index, t2, sha256="f" * 64)
    assert index.search("clubs") == [] and len(index.search("white")) == 4
    assert index.count() == (1, len(t2["segments"]))
    assert index.remove("/cases/1/moved/a.mp4") and index.count() == (0, 0)
    assert index.search("white") == []


def test_prefix_phrase_or_exclude(index):
    add(index, synthetic_transcript(tsv_sentences("pocketsphinx"), "/c/ps.mp4"))
    add(index, synthetic_transcript(tsv_sentences("ljspeech"), "/c/lj.mp4"))
    add(index, synthetic_transcript(["the green backpack is on the back seat", "a blue backpack"], "/c/bp.mp4"))
    texts = lambda q: sorted(h.text.strip() for h in index.search(q))  # noqa: E731
    assert texts("backpack") == ["a blue backpack", "the green backpack is on the back seat"]
    assert texts('"green backpack"') == ["the green backpack is on the back seat"]
    assert texts('"backpack green"') == []
    back = texts("back*")
    assert "a blue backpack" in back and "the green backpack is on the back seat" in back
    assert texts('"green back"*') == ["the green backpack is on the back seat"]
    assert texts("backpack -green") == ["a blue backpack"]
    assert texts('backpack -"green backpack"') == ["a blue backpack"]
    assert texts("green OR blue backpack") == ["a blue backpack", "the green backpack is on the back seat"]
    assert len(texts("clubs OR spades")) == 4
    assert texts("spades OR hearts") == ["eight of spades four of clubs seven of hearts"]
    assert texts("BACKPACK Green") == texts('"green backpack"')
    hits = index.search("clubs", limit=2)
    assert len(hits) == 2 and hits[0].score >= hits[1].score
    # the time of the first matching word: "back" (prefix back*) in "the green backpack…" is word 2
    hit = next(h for h in index.search("back*") if "green" in h.text)
    assert hit.start == pytest.approx(0.8, abs=1e-3)
    # a word that occurs twice: the first one
    hit = index.search("clubs")[0]
    assert hit.start >= 0


def test_file_and_tag_filters(index):
    add(index, synthetic_transcript(tsv_sentences("grid"), "/cases/2024-03/unit7/a.mp4"), tags=["case-17", "unit7"])
    add(index, synthetic_transcript(tsv_sentences("grid"), "/cases/2024-04/unit9/b.mp4"), tags=["case-18"])
    add(index, synthetic_transcript(tsv_sentences("grid"), "/cases/2024-04/unit7/c.MP4"), tags=["case-17"])
    files = lambda **kw: sorted({h.file for h in index.search("white", limit=100, **kw)})  # noqa: E731
    assert len(files()) == 3
    assert files(file_glob="*/2024-04/*") == ["/cases/2024-04/unit7/c.MP4", "/cases/2024-04/unit9/b.mp4"]
    assert files(file_glob="b.mp4") == ["/cases/2024-04/unit9/b.mp4"]  # the file name alone
    assert files(file_glob="*.mp4") == ["/cases/2024-03/unit7/a.mp4", "/cases/2024-04/unit9/b.mp4"]
    assert files(file_glob="*/unit[7]/[!c]*") == ["/cases/2024-03/unit7/a.mp4"]
    assert files(tag="case-17") == ["/cases/2024-03/unit7/a.mp4", "/cases/2024-04/unit7/c.MP4"]
    assert files(tag="case-17", file_glob="*2024-04*") == ["/cases/2024-04/unit7/c.MP4"]
    assert files(tag="nope") == []
    assert index.search("white", tag="unit7")[0].tags == ("case-17", "unit7")


def test_track_recording_date_and_paging(index):
    """Two audio tracks merged as `redact run` indexes them (pipeline.indexed_transcript), recording dates on the
    files, and pages of hits that together are the whole ranked list."""
    from redact.pipeline import indexed_transcript

    first = synthetic_transcript(tsv_sentences("grid"), "/cases/cam.mp4")
    second = synthetic_transcript(["set white by the gate", "white car at the gate"], "/cases/cam.mp4")
    merged = indexed_transcript([{**first, "track": 1}, {**second, "track": 2}])
    add(index, merged, recorded="2024-06-03T10:00:00")
    add(index, synthetic_transcript(tsv_sentences("grid"), "/cases/old.mp4"), recorded="2023-01-15")
    add(index, synthetic_transcript(tsv_sentences("grid"), "/cases/undated.mp4"))
    found = lambda **kw: sorted((h.file, h.track) for h in index.search("white", limit=100, **kw))  # noqa: E731
    assert {t for _, t in found(file_glob="cam.mp4")} == {1, 2}
    assert {h.text for h in index.search("white", track=2, limit=100)} == {"set white by the gate", "white car at the gate"}
    assert {f for f, _ in found(since="2024-06-03")} == {"/cases/cam.mp4"}
    assert {f for f, _ in found(until="2024-06-02")} == {"/cases/old.mp4"}
    assert {f for f, _ in found(since="2023-01-15", until="2023-01-15")} == {"/cases/old.mp4"}
    assert found(since="2024-06-04") == []
    assert index.search("white", file_glob="cam.mp4", limit=1)[0].recorded == "2024-06-03T10:00:00"
    every = index.search("white", limit=100)
    pages = [h for k in range(0, len(every), 4) for h in index.search("white", limit=4, offset=k)]
    assert [(h.file, h.start, h.text) for h in pages] == [(h.file, h.start, h.text) for h in every]
    for bad in [{"since": "June"}, {"until": "2024-6-1"}, {"track": 0}, {"offset": -1}]:
        with pytest.raises(UserError):
            index.search("white", **bad)


@pytest.fixture(scope="session")
def embedder():
    from redact.meaning import Embedder

    return Embedder.load()


PARAPHRASES = [  # (said in other words, a word of the segment meant)
    ("the craft of producing books with metal type", "Printing"),
    ("pictures cut into blocks of timber in the far east", "wood"),
    ("put the colour azure", "blue"),
]


def test_search_by_meaning(index, embedder):
    import numpy as np

    add(index, synthetic_transcript(tsv_sentences("ljspeech"), "/c/lj.mp4", redact={"Chinese": "NORP"}))
    add(index, synthetic_transcript(tsv_sentences("grid"), "/c/grid.mp4"), tags=["grid"])
    assert index.embed(embedder) == index.count()[1] and index.embed(embedder) == 0
    for query, word in PARAPHRASES:
        assert index.search(query) == []  # the words alone find nothing
        hits = index.search(query, meaning=embedder, limit=3)
        assert hits and hits[0].by == "meaning" and any(word in h.text for h in hits), (query, hits)
        assert "[" not in hits[0].snippet  # nothing highlighted: no word matched
    # hybrid never loses a hit the words find: they come first, in the same set
    for query in ['"set white"', "printing", "blue OR green", '"wood blocks"', "impress*"]:
        words = index.search(query, limit=20)
        hybrid = index.search(query, limit=20, meaning=embedder)
        assert words and {(h.file, h.start) for h in hybrid[:len(words)]} == {(h.file, h.start) for h in words}
        assert all(h.by == "words" for h in hybrid[:len(words)]) and all(h.by == "meaning" for h in hybrid[len(words):])
    # filters and exclusions hold for hits by meaning too
    assert {h.file for h in index.search("colour azure", meaning=embedder, tag="grid", limit=50)} == {"/c/grid.mp4"}
    assert all("blue" not in h.text for h in index.search("colour azure -blue", meaning=embedder, limit=50))
    # a bleeped word is not in the segment's vector: it is the vector of the text without it
    nearest = index.nearest(embedder)
    bleeped = next(h for h in index.search("impressions", limit=5) if "[REDACTED: NORP]" in h.text)
    seg = next(i for i, body in index._bodies(nearest.ids.tolist()).items() if "impressions" in body and "█" in body)
    row = nearest.matrix[nearest.ids.tolist().index(seg)]
    body = index._bodies([seg])[seg]
    assert np.allclose(row, embedder.encode([body.replace("█", " ")])[0], atol=2e-3)
    assert not np.allclose(row, embedder.encode([body.replace("█", "Chinese")])[0], atol=2e-2)
    assert bleeped.text.count("[REDACTED: NORP]") == 1
    # re-indexing a file drops its old vectors; the new segments need embedding again
    add(index, synthetic_transcript(tsv_sentences("grid")[:3], "/c/grid.mp4"))
    assert index.embed(embedder) == 3 and len(index.nearest(embedder)) == index.count()[1]


def test_nearest_by_sign_bits_then_exact(embedder):
    """Past Nearest.EXACT vectors the candidates come from the sign bits, then are scored exactly: forced here on
    real sentence vectors (EXACT 0, RERANK 8), each vector is still its own nearest, and ranges are respected."""
    import numpy as np

    from redact.meaning import Nearest

    vectors = embedder.encode(tsv_sentences("ljspeech") + tsv_sentences("pocketsphinx"))
    ids = np.arange(10, 10 + len(vectors))
    near = Nearest(ids, vectors)
    near.EXACT, near.RERANK = 0, 8
    assert [near.top(v, 1)[0] for v in vectors] == ids.tolist()
    assert set(near.top(vectors[0], 5, [(12, 14), (30, 31)])) == {12, 13, 14, 30, 31}
    query = embedder.encode(["the craft of producing books with metal type"])[0]
    exact = Nearest(ids, vectors).top(query, 3)
    assert near.top(query, 3)[0] == exact[0]


def test_file_glob_matching_many_files(index, spec):
    """More than 32 files: SQLite switches from an FTS5 OR of file tokens to a join; same answers."""
    for k in range(40):
        add(index, synthetic_transcript(["set white with p two soon"], f"/many/{'a' if k < 35 else 'b'}{k:02d}.mp4"))
    assert len(index.search("white", limit=100, file_glob="/many/a*")) == 35
    assert len(index.search("white", limit=100, file_glob="a3?.mp4")) == 5
    assert len(index.search("white", limit=100, file_glob="/many/*")) == 40
    assert index.search("white", limit=100, file_glob="/nowhere/*") == []
    hits = index.search("white", limit=10, file_glob="/many/a*", rank_window=12)
    assert hits.truncated and len(hits) == 10 and all("/many/a" in h.file for h in hits)
    if not spec.startswith("postgresql://"):
        assert all(h.file >= "/many/a23" for h in hits)  # the 12 newest of the 35


def test_rank_window_bounds_the_ranked_matches(index, spec):
    for k in range(6):  # six files, 3 segments each that say "clubs"; the newest file is the last added
        add(index, synthetic_transcript(tsv_sentences("pocketsphinx")[5:8], f"/w/{k}.mp4"))
    everything = index.search("clubs", limit=20, rank_window=None)
    assert len(everything) == 18 and not everything.truncated
    windowed = index.search("clubs", limit=3, rank_window=6)
    assert windowed.truncated and len(windowed) == 3
    if not spec.startswith("postgresql://"):  # SQLite: the 6 most recently indexed matches
        assert {h.file for h in windowed} <= {"/w/4.mp4", "/w/5.mp4"}
    assert {h.file for h in windowed} <= {h.file for h in everything}
    assert index.search("clubs", limit=3, rank_window=17).truncated
    assert not index.search("clubs", limit=3, rank_window=18).truncated
    assert len(index.search("clubs", limit=5, rank_window=2)) == 5  # the window is at least the limit
    with pytest.raises(UserError):
        index.search("clubs", rank_window=0)


def test_snippet_and_time_use_the_same_match(index):
    add(index, synthetic_transcript(["Printing, in the only sense with which we are at present concerned, differs "
                                     "from most if not from all the arts and crafts represented in the Exhibition"],
                                    "/s/a.mp4"))
    hit = index.search("exhibition")[0]
    assert hit.snippet.startswith("…") and hit.snippet.endswith("[Exhibition]")
    assert hit.start == pytest.approx(0.4 * 26, abs=1e-3)  # word 26
    hit = index.search('"arts and crafts"')[0]
    assert "[arts and crafts]" in hit.snippet and hit.start == pytest.approx(0.4 * 20, abs=1e-3)
    assert hit.end == pytest.approx(0.4 * 22 + 0.36, abs=1e-3)
    hit = index.search("printing")[0]
    assert hit.snippet.startswith("[Printing],") and hit.start == 0.0


@pytest.mark.parametrize("query", ['"abc', 'green "backpack', "*", "back**", "*back", "b*", "AND OR", "a AND b",
                                   "NOT a", "OR a", "a OR", "a OR OR b", "a OR -b", "-a", "-", "a -", "(a b)",
                                   '""', "   ", "--a", "a" * 1001])
def test_malformed_queries_are_user_errors(query):
    with pytest.raises(QueryError) as e:
        parse_query(query)
    assert isinstance(e.value, UserError) and "\n" not in str(e.value) and str(e.value)


def test_query_translation_is_quoted():
    q = parse_query('green OR "blue car" back* -"red van" don\'t NEAR x: col:y ^z')
    assert q.fts5() == ('(("green" OR "blue car") AND ("back" *) AND ("don t") AND ("near") AND ("x") AND ("col y")'
                        ' AND ("z")) NOT ("red van")')
    assert q.tsquery() == ("(('green') | ('blue' <-> 'car')) & (('back':*)) & (('don' <-> 't')) & (('near')) & "
                           "(('x')) & (('col' <-> 'y')) & (('z')) & !('red' <-> 'van')")
    assert parse_query("Café").tsquery() == "(('cafe'))"
    assert parse_query("or and not").fts5() == '("or") AND ("and") AND ("not")'  # lower case: plain words


def test_bad_transcript_and_spec(tmp_path: Path):
    with open_index(tmp_path / "i.sqlite") as ix:
        with pytest.raises(UserError):
            ix.add({"segments": "nope"}, media_path="/a.mp4", sha256="0" * 64)
        with pytest.raises(UserError):
            ix.add({"segments": [{"start": "x", "end": 1, "text": "a"}]}, media_path="/a.mp4", sha256="0" * 64)
        with pytest.raises(TypeError):
            ix.add(grid_transcript(), media_path="/a.mp4", sha256="0" * 64, tags="case-1")
    with pytest.raises(UserError):
        open_index(tmp_path / "missing.sqlite", create=False)
    with pytest.raises(UserError):
        open_index(tmp_path / "no" / "such" / "folder.sqlite")
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(UserError):
        open_index(tmp_path / "junk.sqlite")
    with pytest.raises(UserError):
        open_index("mysql://x/y")
    with pytest.raises(UserError, match=r"cannot connect to postgresql://u:\*\*\*@127\.0\.0\.1:1/x"):
        open_index("postgresql://u:secret@127.0.0.1:1/x")


def test_index_from_another_schema_version_is_refused(tmp_path: Path):
    import sqlite3

    path = tmp_path / "old.sqlite"
    open_index(path).close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(UserError, match="another version"):
        open_index(path)


def test_default_index_is_in_the_state_home(tmp_path: Path, monkeypatch):
    """REDACT_STATE, else XDG_STATE_HOME/redact; never the model cache (REDACT_HOME), which may be read-only."""
    monkeypatch.setenv("REDACT_HOME", str(tmp_path / "models"))
    monkeypatch.delenv("REDACT_STATE", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    with open_index(None) as ix:
        add(ix, grid_transcript())
    assert (tmp_path / "xdg" / "redact" / "index.sqlite").exists() and not (tmp_path / "models").exists()
    monkeypatch.setenv("REDACT_STATE", str(tmp_path / "state"))
    with open_index(None) as ix:
        add(ix, grid_transcript())
    with open_index(None, create=False) as ix:
        assert len(ix.search("white")) == 1
    assert (tmp_path / "state" / "index.sqlite").exists()


# ---------------------------------------------------------------------------------------------------- CLI


def write_transcripts(folder: Path) -> list[Path]:
    paths = []
    t = grid_transcript()
    paths.append(folder / "grid.transcript.json")
    paths[-1].write_text(json.dumps(t))
    lj = synthetic_transcript(tsv_sentences("ljspeech"), "lj.mp4", redact={"Chinese": "NAME"})
    (folder / "lj.mp4").write_bytes(b"")  # a relative "file" is taken next to the JSON when it exists there
    paths.append(folder / "lj.transcript.json")
    paths[-1].write_text(json.dumps(lj))
    return paths


def test_cli_index_and_search(spec: str, tmp_path: Path):
    runner = CliRunner()
    paths = write_transcripts(tmp_path)
    r = runner.invoke(main, ["index", *map(str, paths), "--index", spec, "--tag", "case-5"])
    assert r.exit_code == 0, r.output
    assert "1 segments indexed" in r.stdout and "32 segments indexed" in r.stdout
    r = runner.invoke(main, ["index", *map(str, paths), "--index", spec, "--tag", "case-5"])  # again: replaces
    assert r.exit_code == 0

    r = runner.invoke(main, ["search", '"white with"', "--index", spec])
    assert r.exit_code == 0, r.output
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1
    file, clock, snippet, link = lines[0].split("\t")
    assert file == str(GRID / "id2_vcd_swwp2s.mpg") and clock == "00:00:00.770"
    assert "[white" in snippet.lower() and link == f"{file}#t=0.770"

    r = runner.invoke(main, ["search", "printing OR woodcutters", "--index", spec, "--json", "--limit", "5",
                             "--tag", "case-5", "--file", "lj.*"])
    assert r.exit_code == 0, r.output
    hits = json.loads(r.stdout)
    assert isinstance(hits, list) and 1 <= len(hits) <= 5
    for h in hits:
        assert {"file", "start", "end", "text", "snippet", "score", "sha256", "tags", "link"} <= h.keys()
        assert isinstance(h["start"], float) and isinstance(h["end"], float) and h["start"] <= h["end"]
        assert h["file"] == str(tmp_path / "lj.mp4") and h["tags"] == ["case-5"]
        assert re.search(r"\[(printing|woodcutters)\]", h["snippet"], re.IGNORECASE)
    r = runner.invoke(main, ["search", "chinese", "--index", spec, "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout) == []
    r = runner.invoke(main, ["search", "nothingmatchesthis", "--index", spec])
    assert r.exit_code == 0 and r.stdout == "" and "no matches" in r.stderr
    r = runner.invoke(main, ["search", "craft of producing books with metal type", "--index", spec, "--meaning"])
    assert r.exit_code == 2 and "no meaning vectors" in r.stderr
    r = runner.invoke(main, ["index", str(paths[0]), "--index", spec, "--meaning"])
    assert r.exit_code == 0 and "33 segments given meaning vectors (minilm-l6/static)" in r.stdout, r.output
    r = runner.invoke(main, ["search", "craft of producing books with metal type", "--index", spec, "--meaning",
                             "--json", "--limit", "3"])
    assert r.exit_code == 0 and [h["by"] for h in json.loads(r.stdout)] == ["meaning"] * 3
    assert any("Printing" in h["text"] for h in json.loads(r.stdout))


@pytest.mark.parametrize("query", ['"abc', "AND OR", "*", "a OR"])
def test_cli_malformed_query_exits_2(spec: str, tmp_path: Path, query: str):
    runner = CliRunner()
    assert runner.invoke(main, ["index", str(write_transcripts(tmp_path)[0]), "--index", spec]).exit_code == 0
    r = runner.invoke(main, ["search", query, "--index", spec])
    assert r.exit_code == 2 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("redact: error: ")


def test_cli_errors_exit_2_in_a_real_process(tmp_path: Path):
    """Through a real process (one: importing redact is slow): exit status 2, one line on stderr, no traceback."""
    r = subprocess.run([sys.executable, "-c", "from redact.cli import main; main()", "search", 'green "back',
                        "--index", str(tmp_path / "none.sqlite")], capture_output=True, text=True)
    assert r.returncode == 2 and r.stdout == "" and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0 and "quote" in r.stderr, r.stderr


def test_cli_bad_inputs(tmp_path: Path):
    runner = CliRunner()
    r = runner.invoke(main, ["search", "white", "--index", str(tmp_path / "none.sqlite")])
    assert r.exit_code == 2 and "no transcript index" in r.stderr
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    good = write_transcripts(tmp_path)[0]
    r = runner.invoke(main, ["index", str(bad), str(good), "--index", str(tmp_path / "i.sqlite")])
    assert r.exit_code == 2 and "cannot read transcript JSON" in r.stderr and len(r.stderr.splitlines()) == 1
    assert "1 segments indexed" in r.stdout  # the good file was still indexed
    r = runner.invoke(main, ["search", "white", "--index", "postgresql://nobody@127.0.0.1:1/none"])
    assert r.exit_code == 2 and "cannot connect" in r.stderr
