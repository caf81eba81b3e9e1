"""Content Credentials (C2PA) in the redacted MP4: a manifest, signed with the agency's key, that travels inside the
file and says which tool made it, what was redacted and which original it came from.

The release package's signed hashes prove a file only to someone who also has the package. A C2PA manifest lives in
the video itself, so any C2PA reader (c2patool, the Content Credentials verify site, a newsroom's tooling) can tell
that the video is the agency's redaction and that not a byte of it changed since.

What the manifest records about the original is its SHA-256 and nothing else: no thumbnail, no pixels, no file name
(body-camera file names often carry an officer's or a suspect's name). The agency, holding the original, can prove
the link; nobody else learns anything from it.

Choices forced by the C2PA specification (checked by the library when it signs):

- Redactions are `c2pa.edited` actions with a `description` (e.g. "face redacted") and the caller's parameters
  (`class`, `count`). `c2pa.redacted` means something else in C2PA: removing an assertion from an ingredient's
  manifest, and it must name that assertion; the library refuses one without. A caller's `c2pa.redacted` is
  rewritten as `c2pa.edited`.
- The original is the parent ingredient (relationship `parentOf`, title "original recording", opened by the first
  action, `c2pa.opened`), defined without its bytes. Its SHA-256 is in the ingredient's description and in the
  assertion `org.redact.original` (`{"sha256": ...}`), which `read` takes it from.
"""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path
from typing import Any, NamedTuple

from redact.errors import UserError, partial_path
from redact.review import keys

MIME = "video/mp4"
GENERATOR = "redact"
ORIGINAL_LABEL = "org.redact.original"
ORIGINAL_TITLE = "original recording"
_ORIGINAL_ID = "original"
_ACTIONS_LABELS = ("c2pa.actions.v2", "c2pa.actions")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class Credentials(NamedTuple):
    """What a video's Content Credentials say, and whether they hold.

    `valid`: the library found no failure (signature, certificate, every hash, the video's bytes), and, where a
    trust anchor was given, the signing certificate chains to it. `state`: the library's own word ("Trusted",
    "Valid", "Invalid"). `errors`: its failure codes with their explanations, e.g.
    "assertion.bmffHash.mismatch: asset hash error ...". `signer`: the signing certificate's common name."""

    valid: bool
    state: str
    generator: str
    actions: list[dict]
    original_sha256: str | None
    signer: str | None
    errors: list[str]


def embed(video: Path, dest: Path, signer: keys.Signer, *, actions: list[dict], original_sha256: str,
          tool_version: str, title: str) -> None:
    """Write `dest`: the MP4 `video` with a signed C2PA manifest in it; the frames and samples are the same bytes.

    `title` is the name the video is published under (usually the output's name; `dest` may be a temporary name):
    never the original's, which may name people. `actions` are the redactions, one per kind, e.g.
    `{"action": "c2pa.edited", "description": "face redacted", "parameters": {"class": "face", "count": 12}}`
    (`c2pa.redacted` is accepted and rewritten, see the module's docstring). The claim generator is
    "redact/`tool_version`". Signed with `signer` through its `sign` method (a key in a hardware module works as
    well as one in a file) and the certificate chain at `signer.cert_path`; no time-stamp authority, so it works
    offline. `dest` appears whole or not at all. UserError when the chain is missing or does not fit the key, or
    the library refuses the video or the certificate."""
    import c2pa

    if not _SHA256.fullmatch(original_sha256):
        raise ValueError(f"not a SHA-256 in hex: {original_sha256!r}")
    chain = _read_chain(signer)
    manifest = {
        "claim_generator_info": [{"name": GENERATOR, "version": tool_version}],
        "title": title,
        "format": MIME,
        "ingredients": [{"title": ORIGINAL_TITLE, "format": MIME, "relationship": "parentOf",
                         "instance_id": f"urn:sha256:{original_sha256}", "label": _ORIGINAL_ID,
                         "description": f"SHA-256 {original_sha256}"}],
        "assertions": [
            {"label": "c2pa.actions.v2", "created": True, "data": {"actions": [
                {"action": "c2pa.opened", "parameters": {"ingredientIds": [_ORIGINAL_ID]}},
                *(_spec_action(a) for a in actions)]}},
            {"label": ORIGINAL_LABEL, "created": True, "data": {"sha256": original_sha256}},
        ],
    }
    tmp = partial_path(dest)
    try:
        # No thumbnails: the output's would be a copy of a frame, and nothing is wanted in the manifest but facts.
        with (c2pa.Context.from_dict({"builder": {"thumbnail": {"enabled": False}}}) as context,
              c2pa.Signer.from_callback(lambda data: base64.b64decode(signer.sign(data)),
                                        c2pa.C2paSigningAlg.ED25519, chain.decode(), None) as c2pa_signer,
              c2pa.Builder(manifest, context=context) as builder,
              open(video, "rb") as src, open(tmp, "w+b") as out):
            builder.sign(c2pa_signer, MIME, src, out)
        os.replace(tmp, dest)
    except c2pa.C2paError as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, c2pa.C2paError.Signature):
            raise UserError(f"{signer.cert_path}: the certificate chain does not fit the key ({e})") from None
        raise UserError(f"{video}: cannot add Content Credentials: {e}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read(video: Path, trust_anchor: Path | None = None) -> Credentials | None:
    """The Content Credentials in `video`, or None when it carries none.

    With `trust_anchor` (a PEM certificate authority, e.g. the agency's `ca.crt`), `valid` means intact AND signed
    by a certificate that authority issued: state "Trusted". Without one, nobody's certificate is checked and
    `valid` means only intact: the signature matches the certificate in the file and the video is byte for byte
    what was signed (state "Valid"), whoever made that certificate. Only the first answers "did the agency make
    this?"; a forger with a certificate of their own passes the second."""
    import c2pa

    settings: dict[str, Any] = {"verify": {"verify_trust": trust_anchor is not None}}
    if trust_anchor is not None:
        settings["trust"] = {"trust_anchors": _read_anchor(trust_anchor)}
    try:
        context = c2pa.Context.from_dict(settings)
    except c2pa.C2paError as e:
        raise UserError(f"{trust_anchor}: not a certificate the C2PA library accepts: {e}") from None
    try:
        with context, open(video, "rb") as f:
            reader = c2pa.Reader.try_create(MIME, f, context=context)
            if reader is None:
                return None
            with reader:
                store = json.loads(reader.json())
    except OSError as e:
        raise UserError(f"{video}: cannot read: {e.strerror}") from None
    except c2pa.C2paError as e:
        raise UserError(f"{video}: cannot read its Content Credentials: {e}") from None
    return _credentials(store, trusting=trust_anchor is not None)


def _credentials(store: dict, trusting: bool) -> Credentials:
    manifest = store.get("manifests", {}).get(store.get("active_manifest"), {})
    state = store.get("validation_state") or "Invalid"
    failures = (store.get("validation_results") or {}).get("activeManifest", {}).get("failure")
    if failures is None:
        failures = store.get("validation_status") or []
    errors = [f"{s.get('code')}: {s.get('explanation', '')}".rstrip(": ") for s in failures]
    info = (manifest.get("claim_generator_info") or [{}])[0]
    generator = "/".join(str(info[k]) for k in ("name", "version") if info.get(k)) or manifest.get("claim_generator", "")
    actions: list[dict] = []
    original = None
    for assertion in manifest.get("assertions", []):
        if assertion.get("label") in _ACTIONS_LABELS:
            actions += assertion.get("data", {}).get("actions", [])
        elif assertion.get("label") == ORIGINAL_LABEL:
            original = assertion.get("data", {}).get("sha256")
    signature = manifest.get("signature_info") or {}
    valid = not errors and state in (("Trusted",) if trusting else ("Valid", "Trusted"))
    return Credentials(valid, state, generator, actions, original,
                       signature.get("common_name") or signature.get("issuer"), errors)


def _spec_action(action: dict) -> dict:
    """`action` as C2PA means it: a description in the parameters moves up to the action's own `description`;
    `c2pa.redacted` (in C2PA: removing an assertion) becomes `c2pa.edited` with a description."""
    action = dict(action)
    parameters = dict(action.get("parameters") or {})
    if "description" in parameters and "description" not in action:  # where C2PA (v2) and its viewers have it
        action["description"] = parameters.pop("description")
        action["parameters"] = parameters
    if action.get("action") == "c2pa.redacted":
        action["action"] = "c2pa.edited"
        kind = (action.get("parameters") or {}).get("class")
        action.setdefault("description", f"{kind} redacted" if kind else "redacted")
    return action


def _read_anchor(path: Path) -> str:
    """The PEM certificates at `path`; UserError for anything else (the library would silently trust nothing)."""
    from cryptography import x509

    try:
        pem = path.read_bytes()
        x509.load_pem_x509_certificates(pem)
    except OSError as e:
        raise UserError(f"{path}: cannot read the trust anchor: {e.strerror}") from None
    except ValueError:
        raise UserError(f"{path}: not a PEM certificate (the trust anchor is a certificate authority's, e.g. "
                        "ca.crt)") from None
    return pem.decode()


def _read_chain(signer: keys.Signer) -> bytes:
    """The PEM chain at `signer.cert_path`, checked to start with the key's own certificate: the library would
    otherwise sign and then fail with a less helpful message."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    path = signer.cert_path
    try:
        chain = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no certificate chain for Content Credentials (`redact keys init` makes one; "
                        f"an agency's own goes there or in ${keys.CERT_ENV})") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read the certificate chain: {e.strerror}") from None
    try:
        leaf = x509.load_pem_x509_certificates(chain)[0]
    except ValueError as e:
        raise UserError(f"{path}: not a PEM certificate chain: {e}") from None
    key = leaf.public_key()
    public = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw) \
        if isinstance(key, Ed25519PublicKey) else b""
    if public != signer.public:
        raise UserError(f"{path}: the certificate chain does not fit the key {signer.path} (its first certificate "
                        "must be the key's)")
    return chain
