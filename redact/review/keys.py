"""The agency's signing key: who made a decisions history, an audit log and a release package.

SHA-256 values prove that files match each other, not who made them: anyone who can write the files can recompute
them. An Ed25519 key held by the agency turns them into evidence. `redact keys init` makes one in the state home
(`keys/agency.key`, readable by its owner only), with a certificate chain for Content Credentials made by a local
certificate authority (`agency.crt`: the agency's certificate then the authority's; `ca.crt`: the authority, the
trust anchor a verifier is given). An agency with a certificate from a public authority puts its chain at
`agency.crt` (or names it with `$REDACT_SIGNING_CERT`). `--key` or `$REDACT_SIGNING_KEY` names a key kept
elsewhere.

A key in a hardware module or a cloud KMS plugs in as another `Signer`: all the rest of redact asks of one is
`sign(data) -> signature`, its public key, and (for Content Credentials) its certificate chain.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from redact.errors import UserError
from redact.models import state_home

KEY_ENV = "REDACT_SIGNING_KEY"
CERT_ENV = "REDACT_SIGNING_CERT"
ALGORITHM = "Ed25519"


def key_dir() -> Path:
    """Where `redact keys init` puts the key: `$REDACT_KEYS`, else the state home's `keys` folder."""
    return Path(os.environ["REDACT_KEYS"]) if os.environ.get("REDACT_KEYS") else state_home() / "keys"


def default_key_path() -> Path:
    return key_dir() / "agency.key"


def fingerprint(public_raw: bytes) -> str:
    """The SHA-256 of the raw 32-byte public key, as hex: what an agency publishes so a requester can tell its key
    from anyone else's."""
    return hashlib.sha256(public_raw).hexdigest()


def public_raw(public_pem: bytes | str) -> bytes:
    """The raw public key of a PEM public key; UserError if it is not an Ed25519 key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    data = public_pem.encode() if isinstance(public_pem, str) else public_pem
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as e:
        raise UserError(f"not a PEM public key: {e}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise UserError("the public key is not an Ed25519 key")
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def verify(public: bytes, data: bytes, signature: str) -> bool:
    """Whether `signature` (base64) is the raw public key `public`'s signature of `data`."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(public).verify(base64.b64decode(signature, validate=True), data)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


@dataclass(frozen=True)
class Signer:
    """An Ed25519 private key and where it came from."""

    path: Path
    private_pem: bytes

    @functools.cached_property
    def _key(self):
        from cryptography.hazmat.primitives import serialization

        return serialization.load_pem_private_key(self.private_pem, password=None)

    @functools.cached_property
    def public(self) -> bytes:
        """The raw 32-byte public key."""
        from cryptography.hazmat.primitives import serialization

        return self._key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    @property
    def public_pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self._key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public)

    def sign(self, data: bytes) -> str:
        """The signature of `data`, base64."""
        return base64.b64encode(self._key.sign(data)).decode()

    @property
    def cert_path(self) -> Path:
        """The certificate chain that goes with the key (PEM, the key's certificate first)."""
        named = os.environ.get(CERT_ENV)
        return Path(named) if named else self.path.with_suffix(".crt")


def _read_key(path: Path) -> Signer:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no signing key there (make one with `redact keys init`)") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read the signing key: {e.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise UserError(f"{path}: not an unencrypted PEM private key: {e}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UserError(f"{path}: the signing key must be an Ed25519 key")
    return Signer(path, data)


def load_signer(path: str | os.PathLike[str] | None = None) -> Signer | None:
    """The agency's key: `path`, else `$REDACT_SIGNING_KEY`, else the state home's key where one was made; None
    where there is none (outputs are then unsigned, as before keys existed). A key that is named and cannot be
    read is an error, never a silent fall back to unsigned."""
    named = path or os.environ.get(KEY_ENV)
    if named:
        return _read_key(Path(named))
    default = default_key_path()
    return _read_key(default) if default.exists() else None


def init_key(path: str | os.PathLike[str] | None = None, organisation: str = "redact agency") -> Signer:
    """Make a new key at `path` (default: the state home's), readable by its owner only, with a certificate chain
    beside it from a local certificate authority made for it. Refuses to replace a key: what it signed would
    no longer verify."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    target = Path(path) if path else default_key_path()
    if target.exists():
        raise UserError(f"{target}: a signing key is already there; what it signed verifies only with it "
                        "(remove it yourself if you mean to replace it)")
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    pem = Ed25519PrivateKey.generate().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption())
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    signer = Signer(target, pem)
    chain, anchor = local_chain(signer, organisation)
    target.with_suffix(".crt").write_bytes(chain)
    (target.parent / "ca.crt").write_bytes(anchor)
    (target.parent / "agency.pub").write_bytes(signer.public_pem)
    return signer


def local_chain(signer: Signer, organisation: str) -> tuple[bytes, bytes]:
    """A certificate for the key, issued by a certificate authority made here and now (its private key is thrown
    away once it has signed): (the chain, key's certificate first; the authority's certificate, the trust anchor).
    What a demo and the tests sign Content Credentials with; C2PA validators trust it only when given the anchor."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
                         x509.NameAttribute(NameOID.COMMON_NAME, f"{organisation} local certificate authority")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
          .not_valid_after(now + dt.timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    public = serialization.load_pem_public_key(signer.public_pem)
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
                                     x509.NameAttribute(NameOID.COMMON_NAME, f"{organisation} release signing")]))
            .issuer_name(ca_name).public_key(public).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1825))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    return leaf.public_bytes(pem) + ca.public_bytes(pem), ca.public_bytes(pem)
