"""`redact verify`: what a requester (or a court) runs on a release package to learn whether it is intact and
whose it is.

It checks every file against `manifest.sha256`, and that nothing was added; the agency's signature of the
manifest with the package's public key (and, given the fingerprint the agency publishes, that the key is the
agency's); that the video is the one the agency's signed audit log recorded (`log-seal.json`); and the video's
Content Credentials, whose recorded original must be the one the log names (and, given the agency's trust anchor,
that its certificate chain is trusted). Each failure is named; nothing is changed.
"""

from __future__ import annotations

import json
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from redact.errors import UserError
from redact.models import sha256_file
from redact.review.custody import check_seal, short
from redact.review.keys import fingerprint, public_raw, verify
from redact.review.release import LOG_SEAL, MANIFEST, PUBLIC_KEY, SIGNATURE


@dataclass
class Verdict:
    """What `verify_package` found: `passed` says what holds, `failed` what does not (empty: the package is good)."""

    package: Path
    key: str | None = None  # the signing key's fingerprint
    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def verify_package(path: str | Path, *, expect_key: str | None = None, trust_anchor: Path | None = None,
                   allow_unsigned: bool = False) -> Verdict:
    """Check the package folder or zip at `path` (see the module's docstring). `expect_key`: the fingerprint
    the agency publishes (a prefix of 16 or more hex digits will do); `allow_unsigned`: an unsigned package is
    reported, not failed. Raises UserError when `path` is not a release package at all."""
    path = Path(path)
    if path.is_file() and zipfile.is_zipfile(path):
        with tempfile.TemporaryDirectory(prefix=".redact-verify.") as tmp:
            folder = _unzip(path, Path(tmp))
            verdict = _verify(folder, expect_key, trust_anchor, allow_unsigned)
            verdict.package = path
            return verdict
    if not path.is_dir():
        raise UserError(f"{path}: not a release package (a folder or a .zip made by `redact release`)")
    return _verify(path, expect_key, trust_anchor, allow_unsigned)


def _unzip(archive: Path, into: Path) -> Path:
    """The package folder of a release zip, extracted into `into`; refuses members outside one top folder."""
    with zipfile.ZipFile(archive) as z:
        names = z.namelist()
        tops = {PurePosixPath(n).parts[0] for n in names if n}
        if len(tops) != 1 or any(".." in PurePosixPath(n).parts or n.startswith("/") for n in names):
            raise UserError(f"{archive}: not a release package (its files are not all in one folder)")
        z.extractall(into)
    return into / tops.pop()


def _verify(folder: Path, expect_key: str | None, trust_anchor: Path | None, allow_unsigned: bool) -> Verdict:
    verdict = Verdict(folder)
    manifest = folder / MANIFEST
    if not manifest.is_file():
        raise UserError(f"{folder}: not a release package (no {MANIFEST})")
    listed = _files(manifest, verdict)
    if not verdict.failed:
        verdict.passed.append(f"{len(listed)} files match {MANIFEST}")
    public = _signature(folder, manifest.read_bytes(), listed, verdict, expect_key, allow_unsigned)
    videos = [name for name in listed if name.endswith(".redacted.mp4")]
    if len(videos) != 1:
        verdict.failed.append(f"{MANIFEST}: lists {len(videos)} redacted videos, a package has one")
        return verdict
    video = folder / videos[0]
    statement = _seal(folder, listed, public, video, verdict)
    _credentials(video, statement, trust_anchor, verdict)
    return verdict


def _files(manifest: Path, verdict: Verdict) -> dict[str, str | None]:
    """The manifest's names -> the SHA-256 of the file there now (None: missing), each checked against the
    manifest's; and the folder for files it does not list. Each file is read once."""
    listed: dict[str, str] = {}
    for n, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), start=1):
        sha, _, name = line.partition("  ")
        if len(sha) != 64 or not name or "/" in name or name in (MANIFEST, SIGNATURE):
            verdict.failed.append(f"{MANIFEST}: line {n} is not a checksum line of this package")
            continue
        listed[name] = sha
    folder = manifest.parent
    found: dict[str, str | None] = {}
    for name, sha in listed.items():
        f = folder / name
        found[name] = sha256_file(f) if f.is_file() else None
        if found[name] is None:
            verdict.failed.append(f"{name}: missing (the manifest lists it)")
        elif found[name] != sha:
            verdict.failed.append(f"{name}: changed (its SHA-256 is not the manifest's)")
    for f in sorted(folder.iterdir()):
        if f.name not in listed and f.name not in (MANIFEST, SIGNATURE):
            verdict.failed.append(f"{f.name}: not in the manifest (added to the package)")
    return found


def _signature(folder: Path, manifest: bytes, listed: dict[str, str | None], verdict: Verdict, expect_key: str | None,
               allow_unsigned: bool) -> bytes | None:
    """The package's public key where the manifest's signature verifies with it."""
    sig = folder / SIGNATURE
    if not sig.is_file():
        (verdict.passed if allow_unsigned else verdict.failed).append(
            f"{SIGNATURE}: missing: the package is unsigned (nothing proves who made it)")
        return None
    if PUBLIC_KEY not in listed:
        verdict.failed.append(f"{PUBLIC_KEY}: missing from the manifest (the signature cannot be checked)")
        return None
    try:
        public = public_raw((folder / PUBLIC_KEY).read_bytes())
    except (UserError, OSError) as e:
        verdict.failed.append(f"{PUBLIC_KEY}: {e}")
        return None
    verdict.key = fingerprint(public)
    if not verify(public, manifest, sig.read_text(encoding="ascii", errors="replace").strip()):
        verdict.failed.append(f"{SIGNATURE}: the signature of {MANIFEST} does not verify with {PUBLIC_KEY} "
                              "(the manifest was changed, or signed by another key)")
        return None
    if expect_key and not (len(expect_key) >= 16 and verdict.key.startswith(expect_key.lower())):
        verdict.failed.append(f"{PUBLIC_KEY}: the package is signed by key {verdict.key}, not the expected {expect_key}")
        return None
    verdict.passed.append(f"{MANIFEST} signed by key {verdict.key}"
                          + ("" if expect_key else " (compare it with the fingerprint the agency publishes)"))
    return public


def _seal(folder: Path, listed: dict[str, str | None], public: bytes | None, video: Path, verdict: Verdict) -> dict | None:
    """The signed statement of the audit log, where it verifies with the package's key and names this video."""
    if LOG_SEAL not in listed:
        if public is not None:
            verdict.failed.append(f"{LOG_SEAL}: missing: nothing signed says which video the audit log recorded")
        return None
    try:
        seal = json.loads((folder / LOG_SEAL).read_text(encoding="utf-8"))
        sealed_by = check_seal(seal, LOG_SEAL)
    except (UserError, ValueError) as e:
        verdict.failed.append(str(e) if isinstance(e, UserError) else f"{LOG_SEAL}: unreadable: {e}")
        return None
    if public is not None and sealed_by != public:
        verdict.failed.append(f"{LOG_SEAL}: sealed by key {short(fingerprint(sealed_by))}, not the package's")
        return None
    statement = seal["statement"]
    if statement.get("output_sha256") != listed[video.name]:
        verdict.failed.append(f"{video.name}: its SHA-256 is not the one the signed audit log recorded")
        return None
    verdict.passed.append(f"{video.name} is the video the signed audit log recorded "
                          f"(original SHA-256 {statement.get('input_sha256')})")
    return statement


def _credentials(video: Path, statement: dict | None, trust_anchor: Path | None, verdict: Verdict) -> None:
    from redact.review import credentials

    found = credentials.read(video, trust_anchor)
    if found is None:
        verdict.passed.append(f"{video.name}: carries no Content Credentials")
        return
    if not found.valid:
        verdict.failed.append(f"{video.name}: its Content Credentials do not validate ({'; '.join(found.errors)})")
        return
    if statement is not None and found.original_sha256 != statement.get("input_sha256"):
        verdict.failed.append(f"{video.name}: its Content Credentials name another original than the signed log")
        return
    trusted = f"trusted by {trust_anchor.name}" if trust_anchor else "intact; no trust anchor given"
    verdict.passed.append(f"{video.name}: Content Credentials valid ({found.state}, {trusted})")
