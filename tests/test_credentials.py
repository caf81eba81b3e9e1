"""Content Credentials in a real MP4 made here, signed with a key made here: what `read` says back, that the video
still decodes frame for frame, and that tampering, a stranger's authority, no manifest and no chain are each told
apart."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import av
import numpy as np
import pytest

from media import make_clip
from redact.errors import UserError
from redact.review import credentials, keys

ACTIONS = [{"action": "c2pa.redacted", "parameters": {"class": "face", "count": 12}},
           {"action": "c2pa.redacted", "parameters": {"class": "plate", "count": 3}},
           {"action": "c2pa.edited", "parameters": {"description": "audio bleeped", "count": 2}}]
NAME = "secret-suspect-name.mp4"


@pytest.fixture(scope="module")
def signed(tmp_path_factory) -> dict:
    """A 48-frame 320x240 H.264 clip with AAC audio, its SHA-256, the agency's key and the clip with credentials."""
    tmp = tmp_path_factory.mktemp("credentials")
    image = np.random.default_rng(0).integers(0, 255, (240, 320 + 48, 3), np.uint8)
    clip = make_clip(tmp / NAME, frames=48, image=image)
    signer = keys.init_key(tmp / "keys" / "agency.key")
    sha = hashlib.sha256(clip.read_bytes()).hexdigest()
    out = tmp / "release" / "redacted.mp4"
    out.parent.mkdir()
    credentials.embed(clip, out, signer, actions=ACTIONS, original_sha256=sha, tool_version="9.8.7",
                      title="redacted.mp4")
    return {"tmp": tmp, "clip": clip, "signer": signer, "sha": sha, "out": out, "ca": tmp / "keys" / "ca.crt"}


def timestamps(path: Path) -> tuple[list[int], list[int]]:
    """The pts of every decoded video frame and audio frame."""
    with av.open(str(path)) as c:
        video = [f.pts for f in c.decode(video=0)]
    with av.open(str(path)) as c:
        audio = [f.pts for f in c.decode(audio=0)]
    return video, audio


def box(data: bytes, kind: bytes) -> tuple[int, int]:
    """(offset, size) of the first top-level MP4 box of type `kind`."""
    at = 0
    while at < len(data):
        size, found = struct.unpack(">I4s", data[at:at + 8])
        if size == 1:
            size = struct.unpack(">Q", data[at + 8:at + 16])[0]
        elif size == 0:
            size = len(data) - at
        if found == kind:
            return at, size
        at += size
    raise AssertionError(f"no {kind!r} box")


def test_embed_then_read_with_the_agency_anchor(signed):
    got = credentials.read(signed["out"], trust_anchor=signed["ca"])
    assert got is not None
    assert (got.valid, got.state, got.errors) == (True, "Trusted", [])
    assert got.generator == "redact/9.8.7"
    assert got.original_sha256 == signed["sha"]
    assert got.signer == "redact agency release signing"
    assert got.actions[0]["action"] == "c2pa.opened"
    redactions = [(a["action"], a.get("description"), a["parameters"]) for a in got.actions[1:]]
    assert redactions == [("c2pa.edited", "face redacted", {"class": "face", "count": 12}),
                          ("c2pa.edited", "plate redacted", {"class": "plate", "count": 3}),
                          ("c2pa.edited", "audio bleeped", {"count": 2})]
    data = signed["out"].read_bytes()
    assert NAME.encode() not in data and b"secret-suspect" not in data
    assert b"original recording" in data and signed["sha"].encode() in data


def test_without_an_anchor_intact_is_valid_but_not_trusted(signed):
    got = credentials.read(signed["out"])
    assert (got.valid, got.state, got.errors) == (True, "Valid", [])


def test_the_video_decodes_to_the_same_frames_and_timestamps(signed):
    before, after = timestamps(signed["clip"]), timestamps(signed["out"])
    assert len(before[0]) == 48 and len(before[1]) > 0
    assert after == before


def test_a_byte_changed_in_the_video_data_is_a_hash_mismatch(signed, tmp_path):
    data = bytearray(signed["out"].read_bytes())
    at, size = box(data, b"mdat")
    data[at + size // 2] ^= 0xFF
    tampered = tmp_path / "tampered.mp4"
    tampered.write_bytes(data)
    got = credentials.read(tampered, trust_anchor=signed["ca"])
    assert (got.valid, got.state) == (False, "Invalid")
    assert any(e.startswith("assertion.bmffHash.mismatch") for e in got.errors), got.errors


def test_another_authority_does_not_trust_it(signed, tmp_path):
    keys.init_key(tmp_path / "other" / "agency.key", organisation="someone else")
    got = credentials.read(signed["out"], trust_anchor=tmp_path / "other" / "ca.crt")
    assert got.valid is False
    assert got.state != "Trusted"
    assert any(e.startswith("signingCredential.untrusted") for e in got.errors), got.errors


def test_a_video_without_credentials_reads_as_none(signed):
    assert credentials.read(signed["clip"]) is None
    assert credentials.read(signed["clip"], trust_anchor=signed["ca"]) is None


def test_a_missing_chain_is_a_user_error(signed, tmp_path):
    signer = keys.init_key(tmp_path / "keys" / "agency.key")
    signer.cert_path.unlink()
    with pytest.raises(UserError, match="no certificate chain"):
        credentials.embed(signed["clip"], tmp_path / "out.mp4", signer, actions=ACTIONS,
                          original_sha256=signed["sha"], tool_version="1", title="out.mp4")
    assert not list(tmp_path.glob("*.mp4")) and not list(tmp_path.glob(".*partial"))


def test_a_chain_for_another_key_is_a_user_error(signed, tmp_path):
    signer = keys.init_key(tmp_path / "keys" / "agency.key")
    signer.cert_path.write_bytes(signed["signer"].cert_path.read_bytes())
    with pytest.raises(UserError, match="does not fit the key"):
        credentials.embed(signed["clip"], tmp_path / "out.mp4", signer, actions=ACTIONS,
                          original_sha256=signed["sha"], tool_version="1", title="out.mp4")


def test_an_anchor_that_is_not_a_certificate_is_a_user_error(signed):
    with pytest.raises(UserError, match="not a PEM certificate"):
        credentials.read(signed["out"], trust_anchor=signed["signer"].path)
