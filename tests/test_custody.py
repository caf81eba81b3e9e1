"""Chain of custody on a real run: the agency's key signs the decisions history, the audit logs and the release
package; an insider's rewrite with every hash recomputed is refused; `redact verify` names what was changed; the
released video carries Content Credentials and still plays."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import av
import pytest
from test_release import reviewed

from conftest import EVALDATA, run_cli, wait_until
from redact.errors import UserError
from redact.plan import Plan, plan_path
from redact.review.custody import SEAL, Custody, digest
from redact.review.decisions import decisions_path, load, load_reasons
from redact.review.keys import KEY_ENV, Signer, init_key, public_raw
from redact.review.release import LOG_SEAL, MANIFEST, PUBLIC_KEY, SIGNATURE, release
from redact.review.render import bounds_of, read_log, render
from redact.review.server import Video
from redact.review.verify import verify_package

STEM = "bbaf2n"
CASE, REQUESTER = "FOIA-2026-0099", "A. Requester"


@pytest.fixture(scope="module")
def agency_key(tmp_path_factory) -> Signer:
    return init_key(tmp_path_factory.mktemp("agency") / "agency.key", "Testville Police Department")


@pytest.fixture
def agency(agency_key: Signer, monkeypatch) -> Signer:
    """The agency's key, found by every part of redact as a user's `--key` would make it."""
    monkeypatch.setenv(KEY_ENV, str(agency_key.path))
    return agency_key


@pytest.fixture(scope="module")
def signed_run(redactor, agency_key: Signer, tmp_path_factory) -> Path:
    """A real run of the GRID clip with the agency's key: its log sealed, its video carrying Content Credentials."""
    outdir = tmp_path_factory.mktemp("signed-run")
    before, redactor.custody = redactor.custody, Custody(agency_key)
    try:
        redactor.run(EVALDATA / "video/grid/bbaf2n.mpg", outdir)
    finally:
        redactor.custody = before
    return outdir


def rewrite_history(path: Path, by: str, strip: bool = False) -> None:
    """What an insider does: every entry's `by` rewritten, every hash recomputed along the chain (signatures kept,
    or removed with `strip`)."""
    raw = json.loads(path.read_text())
    head = "0" * 64
    for entry in raw["history"]:
        entry["by"] = by
        if entry["op"].get("op") == "approve":  # the last entry here: the state it gives is the file's
            raw["approved"]["by"] = by
            entry["state"] = digest({k: v for k, v in raw.items() if k != "history"})
        entry["prev"] = head
        entry["hash"] = head = digest({k: v for k, v in entry.items() if k not in ("hash", "sig")})
        if strip:
            entry.pop("sig", None)
    path.write_text(json.dumps(raw, indent=1))


def test_a_signed_run_seals_its_log_and_credentials_its_video(signed_run: Path, agency_key: Signer) -> None:
    log = read_log(signed_run, STEM)
    assert log[SEAL]["fingerprint"] == agency_key.fingerprint
    assert log[SEAL]["statement"]["output_sha256"] == log["output"]["sha256"]
    Custody(agency_key).check_log(log, "log")  # verifies
    assert log["content_credentials"]["embedded"] and log["content_credentials"]["key"] == agency_key.fingerprint
    assert {a["parameters"]["class"] for a in log["content_credentials"]["actions"]} >= {"face"}


def test_history_entries_are_signed_and_a_rewrite_is_refused(signed_run: Path, agency: Signer, tmp_path: Path) -> None:
    outdir, _ = reviewed(signed_run, tmp_path)
    path = decisions_path(outdir, STEM)
    history = json.loads(path.read_text())["history"]
    assert len(history) == 4 and all(e["sig"]["key"] == base64.b64encode(agency.public).decode() for e in history)
    assert read_log(outdir, STEM)["review"]["history_signed"] == 4
    original = path.read_text()

    rewrite_history(path, "Chief Smith")  # the insider's chain checks: before signing, render accepted it
    with pytest.raises(UserError, match="history entry 1: its signature does not verify"):
        render(outdir, STEM)

    path.write_text(original)
    rewrite_history(path, "Chief Smith", strip=True)  # signatures removed with it
    with pytest.raises(UserError, match="history entry 1 is not signed, and this agency signs"):
        render(outdir, STEM)
    with pytest.raises(UserError, match="history entry 1 is not signed"):
        release(outdir, STEM, case=CASE, requester=REQUESTER, dest=tmp_path / "rel")
    assert not (tmp_path / "rel").exists() or not any((tmp_path / "rel").iterdir())

    raw = json.loads(original)
    raw["history"][3].pop("sig")  # only the last: removed after a signed entry, refused whatever the key
    path.write_text(json.dumps(raw))
    with Plan(plan_path(outdir, STEM)) as plan, \
            pytest.raises(UserError, match="history entry 4 is not signed, but entries before it are"):
        load(path, load_reasons(), bounds_of(plan), Custody(agency))

    other = init_key(tmp_path / "other" / "other.key")  # re-signed by a key of the insider's own
    path.write_text(original)
    rewrite_history(path, "Chief Smith")
    raw = json.loads(path.read_text())
    for entry in raw["history"]:
        Custody(other).sign_entry(entry)
    path.write_text(json.dumps(raw))
    with pytest.raises(UserError, match=f"history entry 1 is signed by key {other.fingerprint[:16]}, not by this "
                                        f"agency's key {agency.fingerprint[:16]}"):
        render(outdir, STEM)


def test_signed_work_is_refused_without_the_key(signed_run: Path, agency: Signer, tmp_path: Path, monkeypatch) -> None:
    """A render (or the review page, or a release) without the key would write unsigned files after signed ones:
    refused, naming the key, instead of a silent downgrade."""
    outdir, _ = reviewed(signed_run, tmp_path)
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(UserError, match=f"the audit log is signed by key {agency.fingerprint[:16]}, and no signing "
                                        "key is given"):
        render(outdir, STEM)
    with Plan(plan_path(outdir, STEM)) as plan, pytest.raises(UserError, match="history entry 1 is signed by key"):
        load(decisions_path(outdir, STEM), load_reasons(), bounds_of(plan))
    fresh = tmp_path / "fresh"  # the run alone (no history yet): the review page refuses the first change
    shutil.copytree(signed_run, fresh)
    page = Video(fresh, STEM, load_reasons(), Custody(None))
    with pytest.raises(UserError, match="no signing key is given"):
        page.apply({"op": "approve"}, "Bob", page.decisions().head)
    assert not json.loads(decisions_path(fresh, STEM).read_text()).get("history")


def test_the_same_rewrite_passes_without_a_key(grid_run: Path, tmp_path: Path) -> None:
    """Today's behaviour where an agency has no key: the chain alone cannot tell (the report then says unsigned)."""
    outdir, _ = reviewed(grid_run, tmp_path)
    path, log_path = decisions_path(outdir, STEM), outdir / f"{STEM}.redaction.json"
    rewrite_history(path, "Chief Smith")
    log = json.loads(log_path.read_text())
    log["review"]["history_head"] = json.loads(path.read_text())["history"][-1]["hash"]  # and the log's record of it
    log_path.write_text(json.dumps(log))
    result = render(outdir, STEM)
    assert result.audit["review"]["approved"]["by"] == "Chief Smith" and SEAL not in result.audit


def test_an_edited_log_is_refused(signed_run: Path, agency: Signer, tmp_path: Path) -> None:
    outdir, _ = reviewed(signed_run, tmp_path)
    log_path = outdir / f"{STEM}.redaction.json"
    original = log_path.read_text()
    log = json.loads(original)
    log["review"]["history_head"] = "0" * 64  # what the insider edited to make render accept a cut history
    log_path.write_text(json.dumps(log))
    with pytest.raises(UserError, match="the audit log was changed after it was signed"):
        render(outdir, STEM)
    with pytest.raises(UserError, match="the audit log was changed after it was signed"):
        release(outdir, STEM, case=CASE, requester=REQUESTER, dest=tmp_path / "rel")
    log.pop(SEAL)
    log_path.write_text(json.dumps(log))
    with pytest.raises(UserError, match="the audit log is not signed, and this agency signs its work"):
        render(outdir, STEM)
    render(outdir, STEM, custody=Custody(agency, allow_unsigned=True))  # work from before the key, said so
    assert read_log(outdir, STEM)[SEAL]["fingerprint"] == agency.fingerprint


def package(signed_run: Path, tmp_path: Path) -> Path:
    outdir, _ = reviewed(signed_run, tmp_path)
    return release(outdir, STEM, case=CASE, requester=REQUESTER, dest=tmp_path / "rel").folder


def test_a_signed_package_verifies_and_names_every_changed_file(signed_run: Path, agency: Signer,
                                                               tmp_path: Path) -> None:
    folder = package(signed_run, tmp_path)
    names = sorted(p.name for p in folder.iterdir())
    assert {PUBLIC_KEY, LOG_SEAL, MANIFEST, SIGNATURE} <= set(names)
    assert public_raw((folder / PUBLIC_KEY).read_bytes()) == agency.public
    assert agency.fingerprint in (folder / "report.html").read_text()
    for target in (folder, folder.with_suffix(".zip")):
        verdict = verify_package(target, expect_key=agency.fingerprint[:16], trust_anchor=agency.path.parent / "ca.crt")
        assert verdict.ok, verdict.failed
        assert verdict.key == agency.fingerprint
        assert any("Content Credentials valid" in p for p in verdict.passed), verdict.passed

    for name in names:  # one byte changed in any file: verify fails, naming it
        copy = tmp_path / "changed" / name
        shutil.copytree(folder, copy)
        data = bytearray((copy / name).read_bytes())
        data[len(data) // 2] ^= 0x01
        (copy / name).write_bytes(bytes(data))
        verdict = verify_package(copy, expect_key=agency.fingerprint)
        assert not verdict.ok and any(line.startswith(name) for line in verdict.failed), (name, verdict.failed)

    other = init_key(tmp_path / "other" / "other.key")
    swapped = tmp_path / "swapped"
    shutil.copytree(folder, swapped)
    (swapped / SIGNATURE).write_text(other.sign((swapped / MANIFEST).read_bytes()))  # another key's signature
    assert any(line.startswith(SIGNATURE) for line in verify_package(swapped).failed)
    (swapped / PUBLIC_KEY).write_bytes(other.public_pem)  # and its public key: the manifest's hash of it fails
    lines = verify_package(swapped, expect_key=agency.fingerprint[:16]).failed
    assert any(line.startswith(PUBLIC_KEY) for line in lines), lines


def test_verify_on_the_command_line(signed_run: Path, agency: Signer, tmp_path: Path) -> None:
    folder = package(signed_run, tmp_path)
    ok = run_cli("verify", folder.with_suffix(".zip"), "--expect-key", agency.fingerprint[:16])
    assert ok.returncode == 0 and ok.stdout.rstrip().endswith("verified"), ok.stdout + ok.stderr
    assert f"signed by key {agency.fingerprint}" in ok.stdout
    wrong = run_cli("verify", folder, "--expect-key", "0" * 16)
    assert wrong.returncode == 1 and "FAILED  signing-key.pub: the package is signed by key" in wrong.stdout
    (folder / "exemptions.csv").write_text("start_time\n")
    bad = run_cli("verify", folder)
    assert bad.returncode == 1 and "FAILED  exemptions.csv: changed" in bad.stdout, bad.stdout
    assert run_cli("verify", tmp_path).returncode == 2  # not a package: one line, exit 2


def test_an_unsigned_package_is_said_to_be(grid_run: Path, tmp_path: Path) -> None:
    folder = release(grid_run, STEM, case=CASE, requester=REQUESTER, dest=tmp_path / "rel",
                     allow_unreviewed=True).folder
    assert not (folder / SIGNATURE).exists() and "unsigned" in (folder / "report.html").read_text()
    assert verify_package(folder).failed == [f"{SIGNATURE}: missing: the package is unsigned (nothing proves who made it)"]
    assert verify_package(folder, allow_unsigned=True).ok


def test_keys_init_on_the_command_line(tmp_path: Path) -> None:
    made = run_cli("keys", "init", "--key", tmp_path / "k" / "agency.key")
    assert made.returncode == 0, made.stderr
    key = tmp_path / "k" / "agency.key"
    assert key.stat().st_mode & 0o077 == 0 and (tmp_path / "k" / "ca.crt").is_file()
    fp = next(line.split()[-1] for line in made.stdout.splitlines() if line.startswith("fingerprint:"))
    again = run_cli("keys", "init", "--key", key)
    assert again.returncode == 2 and "already there" in again.stderr
    shown = run_cli("keys", "show", "--key", key)
    assert shown.returncode == 0 and fp in shown.stdout
    missing = run_cli("render", tmp_path, "--key", tmp_path / "nothing.key")
    assert missing.returncode == 2 and "no signing key there" in missing.stderr


def test_the_credentialed_video_plays_frame_for_frame(signed_run: Path, grid_run: Path) -> None:
    """Content Credentials change the container, not the stream: every frame, at the same time, as unsigned."""
    def timeline(path: Path) -> list[int]:
        with av.open(str(path)) as c:
            return [f.pts for f in c.decode(video=0)]

    signed, unsigned = timeline(signed_run / f"{STEM}.redacted.mp4"), timeline(grid_run / f"{STEM}.redacted.mp4")
    assert len(signed) == 75 and signed == unsigned


def test_chromium_plays_the_credentialed_video(signed_run: Path, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    from benchmarks.review_task import CHROMIUM_ARGS

    shutil.copy(signed_run / f"{STEM}.redacted.mp4", tmp_path / "v.mp4")
    (tmp_path / "play.html").write_text('<video id="v" src="v.mp4" muted></video>')
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto((tmp_path / "play.html").as_uri())
            wait_until(page, "document.getElementById('v').readyState >= 2")
            page.evaluate("document.getElementById('v').play()")
            wait_until(page, "document.getElementById('v').currentTime > 0.5")
            assert page.evaluate("document.getElementById('v').videoWidth") == 360
        finally:
            browser.close()
