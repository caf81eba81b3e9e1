"""Review rows joined by appearance (redact/appearance.py): a face lost for a while and found further away is one
row with the fragments before only where the bodies look alike. Real clips: GRID's talking faces."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from conftest import EVALDATA, run_cli
from redact.appearance import body, runs
from redact.models import resolve
from redact.plan import LOOK_GATE, Plan, plan_path


def test_a_speaker_found_again_further_away_is_one_row_and_another_speaker_is_not(two_speakers_run: Path):
    """Speaker A, gone for 36 frames, back about 1.8 box sizes away: further than position alone joins, within the
    reach 1.4 s of gap allows; then speaker B as far from where A was last seen (conftest.two_speakers_run). A's
    pieces are one row that says how alike they were; B's row is its own, because B does not look like A (a
    position-only wider reach would have joined B to A too)."""
    with Plan(plan_path(two_speakers_run, "two")) as plan:
        rows, looks = plan.groups(), plan.meta["joined_by_look"]
        tracks = {t.id: t for t in plan.tracks()}
    assert looks["model"] == "mobilenetv2-imagenet" and looks["gate"] == LOOK_GATE
    assert [(r.first < 30, r.last < 100, r.first > 120) for r in rows] == [(True, True, False), (False, False, True)]
    a, b = rows
    assert len(a.looked) == 1 and LOOK_GATE <= a.looked[0] <= 1  # the join by look, with its similarity
    assert a.doubts == ("joined by look",)  # a guess: a person confirms it before the row is released whole
    assert b.looked == () and b.doubts == ()
    # B's first track was compared with A's last piece and found unlike: that comparison is what kept B apart
    to_b = [v for x, y, v in looks["compared"] if y in b.tracks and x in a.tracks]
    assert to_b and max(to_b) < LOOK_GATE
    assert all(tracks[t].first >= 100 for t in b.tracks)


def test_far_apart_frames_are_reached_by_seeking_and_crops_stay_inside_the_frame():
    assert runs([3, 10, 400, 401, 1000], seek=300) == [(3, 11), (400, 402), (1000, 1001)]
    assert runs([]) == []
    image = np.zeros((100, 200, 3), np.uint8)
    assert body(image, np.array([180, 90, 220, 130])).shape[:2] == (10, 60)  # cut by the right and bottom edges
    assert body(image, np.array([300, 200, 320, 220])).size  # wholly outside: still a pixel, never empty


def test_weights_that_are_not_the_appearance_model_stop_the_run_before_it_starts(tmp_path):
    """`--join-model` given a file that is not MobileNetV2 features (here a plate detector's pickle, then an ONNX
    file): one clear line, a non-zero exit, nothing written, before any frame is read."""
    for name, model in (("plates.pt", "plate-mahdi"), ("faces.pt", "centerface")):
        own = tmp_path / name
        own.write_bytes(resolve(model, "plates" if model.startswith("plate") else "faces")[0].read_bytes())
        proc = run_cli("run", EVALDATA / "video/grid/bbaf2n.mpg", "-o", tmp_path / "out", "--join-model", own)
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
        assert f"{own}: not a MobileNetV2 state dictionary" in proc.stderr, proc.stderr
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
