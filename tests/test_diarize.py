"""Speaker labels on real speech: conversations built from evaldata recordings of different people (turn times
known, as benchmarks/diarization_bench.py builds them), through the real speech model and speaker encoder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.diarization_bench import Conversation, conversation, load, phone, voices, write_wav
from redact.audio import AudioOptions, build_transcript, process_audio, render
from redact.diarize import diarize, embed, narrowband, speech_windows
from redact.search import open_index
from redact.transcribe import SAMPLE_RATE, Segment, Transcription, Word, load_asr, transcribe

TINY = "whisper-tiny-en"


@pytest.fixture(scope="module")
def tiny():
    return load_asr(TINY, "cpu")


@pytest.fixture(scope="module")
def talk(tmp_path_factory) -> tuple[Conversation, Path]:
    """The LJSpeech reader and a GRID speaker, three turns each."""
    conv = conversation("talk", ["ljspeech", "grid-lbax4n"], voices(), np.random.default_rng(3))
    path = tmp_path_factory.mktemp("talk") / "talk.wav"
    write_wav(path, conv.audio)
    return conv, path


def truth(conv: Conversation, t: float) -> str:
    return min(conv.turns, key=lambda turn: 0 if turn[0] <= t <= turn[1] else min(abs(t - turn[0]), abs(t - turn[1])))[2]


def labelled(conv: Conversation, result: Transcription) -> tuple[float, dict[str, str]]:
    """Share of words given their voice's label, under the one label->voice map the words vote for."""
    words = [w for s in result.segments for w in s.words]
    pairs = [(w.speaker, truth(conv, (w.start + w.end) / 2)) for w in words]
    votes: dict[str, dict[str, int]] = {}
    for label, voice in pairs:
        votes.setdefault(label, {}).setdefault(voice, 0)
        votes[label][voice] += 1
    mapping = {label: max(v, key=v.get) for label, v in votes.items()}
    return sum(mapping[label] == voice for label, voice in pairs) / len(pairs), mapping


@pytest.mark.parametrize("quality", ["wideband", "phone"])
def test_turns_change_where_the_voices_change(talk, tiny, tmp_path, quality):
    conv, path = talk
    if quality == "phone":  # 300-3400 Hz at 8 kHz, as a dispatch channel sounds
        path = tmp_path / "phone.wav"
        write_wav(path, phone(conv.audio))
    result = transcribe(path, tiny)
    diarize(path, result)
    right, mapping = labelled(conv, result)
    assert sorted(set(mapping.values())) == ["grid-lbax4n", "ljspeech"]
    assert sorted(mapping) == ["S1", "S2"]  # two voices, two labels, at 8 kHz too
    assert right >= 0.9, right
    assert mapping["S1"] == conv.turns[0][2]  # numbered in order of first speech
    for seg in result.segments:  # segments are split at turns: one speaker each
        assert {w.speaker for w in seg.words} == {seg.speaker}


def test_a_single_speaker_gets_one_label(tiny, tmp_path):
    pool = voices()
    audio = np.concatenate([np.concatenate([np.zeros(8000, np.float32), load(p)]) for p in pool["ljspeech"][:4]])
    path = tmp_path / "one.wav"
    write_wav(path, audio)
    result = transcribe(path, tiny)
    diarize(path, result)
    assert len(result.segments) >= 3
    assert {w.speaker for s in result.segments for w in s.words} == {"S1"}


def test_silence_and_fixed_counts(talk, tiny, tmp_path):
    conv, path = talk
    empty = Transcription("en", 3.0)
    diarize(path, empty)  # nothing said: nothing to label, no error
    assert empty.segments == []
    result = transcribe(path, tiny)
    diarize(path, result, speakers=1)
    assert {w.speaker for s in result.segments for w in s.words} == {"S1"}
    diarize(path, result, speakers=2)
    assert labelled(conv, result)[0] >= 0.9


def test_phone_quality_is_recognised():
    """Stricter limits apply to 8 kHz speech (a dispatch channel): it must be told from wideband speech."""
    speech = load(voices()["ljspeech"][0])
    assert not narrowband([speech])
    assert narrowband([phone(speech)])
    assert not narrowband([])


def test_voices_are_told_apart_by_the_encoder():
    """Windows of one voice are closer to each other than to another voice's (the clustering relies on it)."""
    pool = voices()

    def vectors(path: Path) -> np.ndarray:
        audio = load(path)
        spans = speech_windows(0.0, len(audio) / SAMPLE_RATE)
        return embed([audio[int(a * SAMPLE_RATE):int(b * SAMPLE_RATE)] for a, b in spans])

    lj = np.concatenate([vectors(p) for p in pool["ljspeech"][:3]])
    other = np.concatenate([vectors(p) for p in pool["librivox"][:3]])
    assert np.allclose(np.linalg.norm(lj, axis=1), 1, atol=1e-4)
    within, across = (lj @ lj.T)[np.triu_indices(len(lj), 1)].mean(), (lj @ other.T).mean()
    assert within > 0.7 and across < 0.6, (within, across)


def test_transcript_files_and_search_carry_the_speakers(talk, tmp_path):
    conv, path = talk
    result = process_audio(path, "talk", tmp_path, AudioOptions(asr_model=TINY, pii=()))
    t = json.loads((tmp_path / "talk.transcript.json").read_text())
    speakers = [s["speaker"] for s in t["segments"]]
    assert set(speakers) == {"S1", "S2"} and speakers[0] == "S1"
    assert all(w["speaker"] == s["speaker"] for s in t["segments"] for w in s["words"])
    turns = sum(1 for a, b in zip(speakers, speakers[1:], strict=False) if a != b) + 1
    srt = (tmp_path / "talk.srt").read_text()
    txt = (tmp_path / "talk.txt").read_text().splitlines()
    vtt = (tmp_path / "talk.vtt").read_text()
    assert srt.count("\nS1: ") + srt.count("\nS2: ") == turns  # the speaker at each turn, not on every cue
    assert sum(line.startswith(("S1: ", "S2: ")) for line in txt) == turns
    assert vtt.count("<v S1>") + vtt.count("<v S2>") == len(t["segments"])
    # the GRID speaker's label, found by when that voice spoke (the tiny model spells its words differently by build)
    grid_label = next(s["speaker"] for s in t["segments"] if truth(conv, (s["start"] + s["end"]) / 2) == "grid-lbax4n")
    with open_index(tmp_path / "index.sqlite") as index:
        index.add(result.transcript, media_path=str(path), sha256=t["sha256"])
        said = index.search("printing OR exhibition OR chinese", limit=50)
        assert said and {h.speaker for h in said} == {"S1" if grid_label == "S2" else "S2"}
        assert index.search("printing OR exhibition OR chinese", speaker=grid_label) == []
        assert {h.speaker for h in index.search("now OR please OR again", speaker=grid_label)} <= {grid_label}


def test_renamed_speakers_show_in_every_format():
    words = [Word(0.0, 0.5, " Hello", 0.9, "S1"), Word(0.6, 1.0, " there.", 0.9, "S1"), Word(1.5, 2.0, " Hi", 0.9, "S2")]
    result = Transcription("en", 2.0, [Segment(0.0, 1.0, "Hello there.", words[:2], published=words[:2], speaker="S1"),
                                       Segment(1.5, 2.0, "Hi", words[2:], published=words[2:], speaker="S2")])
    t = build_transcript("x.mp4", "0" * 64, result, {"id": "m", "sha256": ""}, {}, [], {"S1": "Officer Diaz"})
    assert [s["speaker"] for s in t["segments"]] == ["Officer Diaz", "S2"]
    assert render(t, "txt") == "Officer Diaz: Hello there.\nS2: Hi\n"
    assert "<v Officer Diaz>Hello there." in render(t, "vtt") and "\nS2: Hi\n" in render(t, "srt")


def test_a_reviewer_names_a_speaker_in_the_decisions(tmp_path):
    from redact.errors import UserError
    from redact.review.decisions import Bounds, Decisions, describe_changes, load_reasons

    reasons, bounds = load_reasons(), Bounds(10, 64, 48, frozenset(), 5.0, frozenset({"S1", "S2"}))
    d = Decisions(tmp_path / "x.decisions.json")
    before = d.state
    d.apply({"op": "approve"}, "R. Diaz", reasons, bounds)
    d.apply({"op": "speakers", "label": "S2", "name": " Officer Diaz "}, "R. Diaz", reasons, bounds)
    assert d.state["speakers"] == {"S2": "Officer Diaz"} and d.state["approved"] is None  # a change withdraws approval
    assert describe_changes(before, d.state) == {"speaker S2": 'speakers[S2]: null -> "Officer Diaz"'}
    with pytest.raises(UserError, match="no speaker S3"):
        d.apply({"op": "speakers", "label": "S3", "name": "X"}, "R. Diaz", reasons, bounds)
    d.apply({"op": "speakers", "label": "S2", "name": None}, "R. Diaz", reasons, bounds)
    assert "speakers" not in d.state  # back to the label: the state is as it was before any name
