"""The release package, built from a real run of the pipeline, real decisions (through `Decisions.apply`) and a real
render: the manifest verifies with sha256sum, the exemption log says what the decisions say, unapproved decisions
are refused unless allowed (then marked NOT REVIEWED), and nothing of the original goes into the package."""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import EVALDATA, run_cli
from redact.errors import UserError
from redact.plan import Plan, plan_path
from redact.review.decisions import decisions_path, load, load_reasons
from redact.review.release import clock, package_name, release
from redact.review.render import bounds_of, render

STEM = "bbaf2n"
ORIGINAL = EVALDATA / "video" / "grid" / f"{STEM}.mpg"
CASE, REQUESTER = "FOIA-2026-0042", "Jane Q. Public (Ελληνικά 東京)"


@pytest.fixture(scope="module")
def run_outdir(grid_run: Path) -> Path:
    """The shared real run (conftest.grid_run); tests copy it before changing anything."""
    return grid_run


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def reviewed(run_outdir: Path, tmp_path: Path, approve: bool = True) -> tuple[Path, int]:
    """A copy of the run with a reviewer's decisions rendered: the face track un-redacted in frames 20-40, a region
    drawn over frames 10-50, frames 60-64 blacked out; approved or not. Returns the folder and the track id."""
    outdir = tmp_path / "out"
    shutil.copytree(run_outdir, outdir)
    reasons = load_reasons()
    with Plan(plan_path(outdir, STEM)) as plan:
        bounds = bounds_of(plan)
        track = plan.tracks()[0].id
    decisions, _ = load(decisions_path(outdir, STEM), reasons, bounds)
    decisions.apply({"op": "tracks", "ids": [track], "value": {"redact": False, "reason": "not-exempt", "frames": [[20, 40]]}},
                    "Alice Ünver", reasons, bounds)
    decisions.apply({"op": "add", "list": "regions", "value": {"frames": [10, 50], "box": [10, 10, 120, 90], "follow": False,
                                                               "mode": "fill", "reason": "home-interior"}},
                    "Alice Ünver", reasons, bounds)
    decisions.apply({"op": "add", "list": "frame_ranges", "value": {"frames": [60, 64], "mode": "fill",
                                                                    "reason": "officer-safety"}}, "Bob", reasons, bounds)
    if approve:
        decisions.apply({"op": "approve"}, "Alice Ünver", reasons, bounds)
    decisions.save()
    render(outdir, STEM, reasons=reasons)
    return outdir, track


def csv_rows(folder: Path) -> list[dict]:
    with open(folder / "exemptions.csv", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def pdf_pages(pdf: Path) -> list[str]:
    """The text of each page (poppler's pdftotext), or [] where poppler is not installed."""
    if shutil.which("pdftotext") is None:
        return []
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    return [p for p in text.split("\f") if p.strip()]


def test_clock_and_name() -> None:
    assert clock(0) == "00:00:00.000"
    assert clock(3723.4567) == "01:02:03.457"
    assert clock(None) == ""
    assert package_name(" 2026/07 ", "cam 1") == "2026_07-cam_1"


def test_release_package(run_outdir: Path, tmp_path: Path) -> None:
    outdir, track = reviewed(run_outdir, tmp_path)
    before = {p.name: sha256(p) for p in outdir.iterdir()}
    result = release(outdir, STEM, case=CASE, requester=REQUESTER, dest=tmp_path / "pkg")
    folder = result.folder
    assert folder == tmp_path / "pkg" / f"{CASE}-{STEM}" and result.zip == tmp_path / "pkg" / f"{CASE}-{STEM}.zip"
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(result.files)
    assert {f"{STEM}.redacted.mp4", f"{STEM}.transcript.json", f"{STEM}.srt", f"{STEM}.vtt", f"{STEM}.txt",
            "exemptions.csv", "report.html", "report.pdf", "manifest.sha256"} == set(names)
    assert sorted(p.name for p in (tmp_path / "pkg").iterdir()) == sorted([folder.name, result.zip.name])  # no partials

    # the manifest: sha256sum's own format, and sha256sum -c verifies every file in the folder
    manifest = (folder / "manifest.sha256").read_text()
    assert all(re.fullmatch(r"[0-9a-f]{64}  \S+", line) for line in manifest.splitlines())
    assert sorted(line.split("  ", 1)[1] for line in manifest.splitlines()) == sorted(set(names) - {"manifest.sha256"})
    check = subprocess.run(["sha256sum", "--strict", "-c", "manifest.sha256"], cwd=folder, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    (folder / "exemptions.csv").write_text((folder / "exemptions.csv").read_text() + "\n")
    assert subprocess.run(["sha256sum", "-c", "manifest.sha256"], cwd=folder, capture_output=True).returncode != 0

    # the zip holds the same files under the folder's name
    with zipfile.ZipFile(result.zip) as z:
        assert z.testzip() is None
        assert sorted(z.namelist()) == sorted(f"{folder.name}/{n}" for n in names)
        assert z.read(f"{folder.name}/report.pdf") == (folder / "report.pdf").read_bytes()

    # the released video is the rendered one; nothing of the original is in the package; OUTDIR is untouched
    log = json.loads((outdir / f"{STEM}.redaction.json").read_text())
    assert sha256(folder / f"{STEM}.redacted.mp4") == log["output"]["sha256"]
    original = sha256(ORIGINAL)
    packaged = {sha256(p) for p in folder.iterdir()}
    assert original not in packaged and ORIGINAL.name not in names
    assert not any(n.endswith((".sqlite", ".decisions.json", ".redaction.json")) for n in names)
    assert {p.name: sha256(p) for p in outdir.iterdir()} == before

    # the exemption log says what the decisions say
    rows = csv_rows(folder)
    assert list(rows[0]) == ["start_time", "end_time", "first_frame", "last_frame", "media", "class", "source", "action",
                             "reason_code", "statute", "reviewer", "target"]
    assert len(rows) == len(log["exemptions"]) == 4
    unredacted = [r for r in rows if r["action"] == "unredacted"]
    assert len(unredacted) == 1
    u = unredacted[0]
    # a reviewer's un-redaction is the reviewer's act: "manual" (issue 27, defect 6: it said "auto")
    assert (u["target"], u["media"], u["class"], u["source"], u["reason_code"]) == (f"track {track}", "video", "face",
                                                                                 "manual", "not-exempt")
    assert (u["first_frame"], u["last_frame"], u["start_time"], u["end_time"]) == ("20", "40", "00:00:00.800", "00:00:01.640")
    assert u["reviewer"] == "Alice Ünver"
    region = next(r for r in rows if r["class"] == "region")
    assert (region["source"], region["action"], region["reason_code"], region["statute"]) == (
        "manual", "redacted", "home-interior", "5 U.S.C. 552(b)(7)(C)")
    assert (region["first_frame"], region["last_frame"], region["start_time"]) == ("10", "50", "00:00:00.400")
    frames = next(r for r in rows if r["class"] == "frame")
    assert (frames["source"], frames["reason_code"], frames["statute"], frames["reviewer"]) == (
        "manual", "officer-safety", "5 U.S.C. 552(b)(7)(F)", "Bob")
    assert all(re.fullmatch(r"\d\d:\d\d:\d\d\.\d\d\d", r["start_time"]) for r in rows)

    # the report: self-contained, reviewed, with the legend and one thumbnail per un-redaction / manual entry
    html = (folder / "report.html").read_text(encoding="utf-8")
    assert "NOT REVIEWED" not in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # no CDN, nothing fetched
    for text in (CASE, "Jane Q. Public", "Alice Ünver", log["output"]["sha256"], log["input"]["sha256"],
                 "5 U.S.C. 552(b)(7)(F)", "Officer safety", "centerface"):
        assert text in html
    thumbs = re.findall(r'src="data:image/jpeg;base64,([^"]+)"', html)
    assert len(thumbs) == 3
    images = [cv2.imdecode(np.frombuffer(base64.b64decode(t), np.uint8), cv2.IMREAD_COLOR) for t in thumbs]
    # sorted by time: region (frame 30), un-redacted track (frame 30), blacked-out frames (62): the last is taken
    # from the released video (black), never the original (a face on blue)
    assert images[2].mean() < 10 and images[2].shape[:2] == (256, 320)  # the whole frame
    # the region and the released face are shown around their box, outlined (issue 27, defect 6: a whole frame,
    # the face unmarked); the region's box is filled (black) in the released video, the face is back
    for image, inside in zip(images[:2], ("filled", "face"), strict=True):
        outline = (image[..., 0] < 90) & (image[..., 1] > 170) & (image[..., 2] > 200)
        ys, xs = np.nonzero(outline)
        assert len(ys) > 100, inside
        top, bottom, left, right = ys.min(), ys.max(), xs.min(), xs.max()
        on_edge = (np.minimum(np.minimum(ys - top, bottom - ys), np.minimum(xs - left, right - xs)) < 8).mean()
        assert on_edge > 0.95 and (bottom - top) * (right - left) > 0.05 * image.shape[0] * image.shape[1], inside
        within = image[top + 8:bottom - 8, left + 8:right - 8]
        assert (within.mean() < 25) if inside == "filled" else (within.std() > 20), inside
    assert (folder / "report.pdf").read_bytes().startswith(b"%PDF")
    pages = pdf_pages(folder / "report.pdf")
    if pages:
        assert not any("NOT REVIEWED" in p for p in pages)
        assert CASE in pages[0] and "Alice" in pages[0]


def test_unapproved(run_outdir: Path, tmp_path: Path) -> None:
    outdir, _ = reviewed(run_outdir, tmp_path, approve=False)
    dest = tmp_path / "pkg"
    with pytest.raises(UserError, match="not approved"):
        release(outdir, STEM, case=CASE, requester=REQUESTER, dest=dest)
    assert not dest.exists() or not any(dest.iterdir())
    result = release(outdir, STEM, case=CASE, requester=REQUESTER, dest=dest, allow_unreviewed=True)
    rows = csv_rows(result.folder)
    assert rows and all(r["reviewer"].startswith("NOT REVIEWED") for r in rows)
    html = (result.folder / "report.html").read_text(encoding="utf-8")
    assert 'class="banner">NOT REVIEWED' in html
    pages = pdf_pages(result.folder / "report.pdf")
    if pages:
        assert len(pages) >= 2 and all("NOT REVIEWED" in p for p in pages)
    assert subprocess.run(["sha256sum", "-c", "manifest.sha256"], cwd=result.folder, capture_output=True).returncode == 0

    # the CLI: one line, exit 2
    proc = run_cli("release", outdir, "--stem", STEM, "--case", "c2", "--requester", "r", "-o", tmp_path / "cli")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "not approved" in proc.stderr


def test_refusals_leave_nothing(run_outdir: Path, tmp_path: Path) -> None:
    outdir, _ = reviewed(run_outdir, tmp_path)
    dest = tmp_path / "pkg"
    video = outdir / f"{STEM}.redacted.mp4"
    good = video.read_bytes()
    video.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(UserError, match="SHA-256"):
        release(outdir, STEM, case=CASE, requester=REQUESTER, dest=dest)
    assert not any(dest.iterdir())  # no folder, no zip, no partial left
    video.write_bytes(good)

    result = release(outdir, STEM, case=CASE, requester=REQUESTER, dest=dest)
    with pytest.raises(UserError, match="already exists"):
        release(outdir, STEM, case=CASE, requester=REQUESTER, dest=dest)
    assert subprocess.run(["sha256sum", "-c", "manifest.sha256"], cwd=result.folder, capture_output=True).returncode == 0

    # a decision changed after the render (through the API, or by editing the file) must be rendered first
    reasons = load_reasons()
    with Plan(plan_path(outdir, STEM)) as plan:
        bounds = bounds_of(plan)
    decisions, _ = load(decisions_path(outdir, STEM), reasons, bounds)
    saved = decisions_path(outdir, STEM).read_bytes()
    decisions.apply({"op": "remove", "list": "regions", "id": "r1"}, "Alice Ünver", reasons, bounds)
    decisions.apply({"op": "approve"}, "Alice Ünver", reasons, bounds)
    decisions.save()
    with pytest.raises(UserError, match="render first"):
        release(outdir, STEM, case="other", requester=REQUESTER, dest=dest)
    edited = json.loads(saved)  # an edit by hand: the state changed, the history not
    edited["regions"][0]["reason"] = "b6"
    decisions_path(outdir, STEM).write_text(json.dumps(edited), encoding="utf-8")
    with pytest.raises(UserError, match="render first"):
        release(outdir, STEM, case="other", requester=REQUESTER, dest=dest, allow_unreviewed=True)
    assert sorted(p.name for p in dest.iterdir()) == sorted([result.folder.name, result.zip.name])


def test_label_codes(run_outdir: Path, tmp_path: Path) -> None:
    outdir, _ = reviewed(run_outdir, tmp_path)
    before = {p.name: sha256(p) for p in outdir.iterdir()}
    result = release(outdir, STEM, case=CASE, requester=REQUESTER, dest=tmp_path / "pkg", label_codes=True)
    assert {p.name: sha256(p) for p in outdir.iterdir()} == before  # OUTDIR untouched
    folder = result.folder
    assert not (folder / ".render").exists()
    assert sha256(folder / f"{STEM}.redacted.mp4") != before[f"{STEM}.redacted.mp4"]  # the codes are burnt in
    assert subprocess.run(["sha256sum", "-c", "manifest.sha256"], cwd=folder, capture_output=True).returncode == 0
    assert ".partial" not in (folder / f"{STEM}.transcript.json").read_text(encoding="utf-8")
    assert "the reason code is burnt onto each redaction" in (folder / "report.html").read_text(encoding="utf-8")
    assert [r["reason_code"] for r in csv_rows(folder)] == [r["reason_code"] for r in csv_rows_of(outdir, tmp_path)]


def csv_rows_of(outdir: Path, tmp_path: Path) -> list[dict]:
    """The exemption rows of a plain release of `outdir`, for comparison."""
    return csv_rows(release(outdir, STEM, case="plain", requester="r", dest=tmp_path / "plain").folder)


def test_failure_leaves_no_package(run_outdir: Path, tmp_path: Path, monkeypatch) -> None:
    import redact.review.release

    outdir, _ = reviewed(run_outdir, tmp_path)

    def broken(ctx: dict) -> bytes:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(redact.review.release, "report_pdf", broken)
    dest = tmp_path / "pkg"
    with pytest.raises(UserError, match="out of disk space"):
        release(outdir, STEM, case=CASE, requester=REQUESTER, dest=dest)
    assert list(dest.iterdir()) == []
