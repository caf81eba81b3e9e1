"""Chain of custody: the agency's signature on each decisions history entry, each audit log and each release.

A hash chain without a key proves only that files agree with each other: an insider who rewrites a history entry
and recomputes every later hash has a chain that checks. Signed with the agency's key (`redact.review.keys`), an entry
changed after it was signed no longer verifies, and one whose signature was removed is refused while the agency
signs. Without a key, everything works as before and is said to be unsigned.

An audit log is signed through its seal: a small statement (the digest of the log, the SHA-256 of the input and of
the published video, the head of the decisions history) and the key's signature of it. The seal travels in the
release package without the log (which names the original's path and may quote redacted speech), so that a
requester can check that the video is the one the signed log recorded.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from redact.errors import UserError
from redact.review.keys import ALGORITHM, KEY_ENV, Signer, fingerprint, load_signer, verify

SEAL = "signature"  # the audit log's key holding its seal
ALLOW_UNSIGNED = "--allow-unsigned accepts work made before the agency had its key"


def canonical(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def digest(obj: object) -> str:
    return hashlib.sha256(canonical(obj)).hexdigest()


def short(fp: str) -> str:
    """A fingerprint as people compare it in a message: its first 16 hex digits."""
    return fp[:16]


@dataclass(frozen=True)
class Custody:
    """Who signs what this process writes, and what it accepts of what it reads: with a key, unsigned history
    entries and logs are refused unless `allow_unsigned`, and signed ones must be this key's; without one, signed
    ones are refused too (what this process wrote after them would be unsigned)."""

    signer: Signer | None = None
    allow_unsigned: bool = False

    @classmethod
    def resolve(cls, key: str | Path | None = None, allow_unsigned: bool = False) -> Custody:
        """The agency's key as `keys.load_signer` finds it (`key`, the environment, the state home)."""
        return cls(load_signer(key), allow_unsigned)

    def _refuse_unsigned(self, what: str) -> None:
        if self.signer is not None and not self.allow_unsigned:
            raise UserError(f"{what} is not signed, and this agency signs its work ({ALLOW_UNSIGNED})")

    def _check_key(self, public: bytes, what: str) -> None:
        if self.signer is None:  # what would be written next is unsigned: refused rather than a silent downgrade
            raise UserError(f"{what} is signed by key {short(fingerprint(public))}, and no signing key is given: give "
                            f"the agency's key (--key or ${KEY_ENV}) to work on signed files")
        if public != self.signer.public:
            raise UserError(f"{what} is signed by key {short(fingerprint(public))}, not by this agency's key "
                            f"{short(self.signer.fingerprint)}")

    # -------------------------------------------------------------------------------------- history entries
    def sign_entry(self, entry: dict) -> None:
        """Sign a history entry's hash (which covers every other field of it)."""
        if self.signer is not None:
            entry["sig"] = {"key": base64.b64encode(self.signer.public).decode(),
                            "value": self.signer.sign(entry["hash"].encode())}

    def check_entry(self, entry: dict, what: str, signed_before: bool) -> bool:
        """Raise UserError (naming `what`, the entry) when the entry's signature fails, is another key's, or is
        missing where it must be there; returns whether it is signed. An unsigned entry after a signed one is
        refused whatever the key: signatures were removed."""
        sig = entry.get("sig")
        if sig is None:
            if signed_before:
                raise UserError(f"{what} is not signed, but entries before it are (its signature was removed)")
            self._refuse_unsigned(what)
            return False
        public = _public(sig, what)
        self._check_key(public, what)
        if not verify(public, str(entry.get("hash", "")).encode(), str(sig.get("value", ""))):
            raise UserError(f"{what}: its signature does not verify (the entry was changed after it was signed)")
        return True

    # -------------------------------------------------------------------------------------- the video
    def credentials(self, video: Path, workdir: Path, redacted: Counter[str], bleeped: int, original_sha256: str,
                    title: str) -> dict | None:
        """Embed Content Credentials in the encoded `video` (replaced in place, before anything hashes it) where
        the agency has a key with a certificate chain: what was redacted (`redacted`: boxes' class -> count of
        tracks, regions, frame ranges), how many audio spans were bleeped, the original by its hash only.
        Returns what the audit log says of them: None unsigned, else the certificate and the actions."""
        if self.signer is None:
            return None
        chain = self.signer.cert_path
        if not chain.is_file():
            return {"embedded": False, "why": f"no certificate chain at {chain} for the signing key"}
        from importlib.metadata import version

        from redact.review import credentials

        actions = credential_actions(redacted, bleeped)
        signed = workdir / f".credentials{video.suffix}"
        credentials.embed(video, signed, self.signer, actions=actions, original_sha256=original_sha256,
                          tool_version=version("redact"), title=title)
        os.replace(signed, video)
        return {"embedded": True, "certificate": str(chain), "key": self.signer.fingerprint, "actions": actions}

    # -------------------------------------------------------------------------------------- audit logs
    def seal(self, log: dict) -> dict:
        """Sign `log` in place (its seal under SEAL); without a key, leave it unsigned. Returns the log."""
        log.pop(SEAL, None)
        if self.signer is not None:
            statement = seal_statement(log)
            log[SEAL] = {"algorithm": ALGORITHM, "key": base64.b64encode(self.signer.public).decode(),
                         "fingerprint": self.signer.fingerprint, "statement": statement,
                         "value": self.signer.sign(canonical(statement))}
        return log

    def check_log(self, log: dict, where: Path | str) -> str | None:
        """Raise UserError when `log`'s seal fails, is another key's, or is missing while the agency signs; return
        the signing key's fingerprint, or None for an unsigned log."""
        seal = log.get(SEAL)
        what = f"{where}: the audit log"
        if seal is None:
            self._refuse_unsigned(what)
            return None
        public = check_seal(seal, what)
        self._check_key(public, what)
        if seal.get("statement") != seal_statement(log):
            raise UserError(f"{what} was changed after it was signed (it no longer matches its seal)")
        return fingerprint(public)


def credential_actions(redacted: Counter[str], bleeped: int) -> list[dict]:
    """The actions a video's Content Credentials state: one per class of what was covered, and the bleeps."""
    actions = [{"action": "c2pa.edited", "description": f"{cls} redacted", "parameters": {"class": cls, "count": n}}
               for cls, n in sorted(redacted.items())]
    if bleeped:
        actions.append({"action": "c2pa.edited", "description": "audio bleeped",
                        "parameters": {"class": "speech", "count": bleeped}})
    return actions


def seal_statement(log: dict) -> dict:
    """What a log's seal signs: the log's digest and the hashes a release is checked against."""
    body = {k: v for k, v in log.items() if k != SEAL}
    return {"log_sha256": digest(body), "input_sha256": (log.get("input") or {}).get("sha256"),
            "output_sha256": (log.get("output") or {}).get("sha256"),
            "history_head": (log.get("review") or {}).get("history_head")}


def check_seal(seal: object, what: str) -> bytes:
    """The raw public key of a seal whose signature verifies over its statement; UserError otherwise."""
    if not isinstance(seal, dict) or not isinstance(seal.get("statement"), dict):
        raise UserError(f"{what}: its seal is malformed")
    public = _public(seal, what)
    if not verify(public, canonical(seal["statement"]), str(seal.get("value", ""))):
        raise UserError(f"{what}: its seal's signature does not verify")
    return public


def _public(sig: dict, what: str) -> bytes:
    try:
        public = base64.b64decode(str(sig.get("key", "")), validate=True)
    except ValueError:
        public = b""
    if len(public) != 32:
        raise UserError(f"{what}: its signature names no Ed25519 key")
    return public
