"""Audit log: what was redacted, why, and by which model, so a release can be defended afterwards."""

from __future__ import annotations

import datetime as dt
import json
import platform
from importlib.metadata import version
from pathlib import Path

from redact.errors import write_text_atomic
from redact.models import sha256_file


def file_entry(path: Path, published_as: Path | None = None) -> dict:
    """Size and hash of `path`, recorded under the name it will be published as."""
    name = published_as or path
    return {"path": str(name.resolve()), "size": path.stat().st_size, "sha256": sha256_file(path)}


def build_log(
    *, source: dict, output: dict, info: dict, models: list[dict], policy: dict, tracks: list[dict],
    stats: dict, audio: dict | None = None, credentials: dict | None = None,
) -> dict:
    """The run's audit log (`source`, `output`: `file_entry`s; `credentials`: what `Custody.credentials` embedded)."""
    return {
        "tool": {"name": "redact", "version": version("redact"), "python": platform.python_version()},
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "input": source,
        "output": output,
        "content_credentials": credentials,
        "video": info,
        "models": models,
        "policy": policy,
        "tracks": tracks,
        "audio": audio,
        "stats": stats,
    }


def write_json_atomic(obj: dict, path: Path) -> None:
    """The log as indented JSON, written atomically: a reader never sees half a log."""
    write_text_atomic(path, json.dumps(obj, indent=2))
