"""Models and state live apart: a user who cannot write the model cache (an image that bakes the models in and
runs as another user) still redacts, indexes and batches, and a transcript index that cannot be written never
fails a redaction that has already been published."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from conftest import REDACT
from media import talking_clip
from redact.models import redact_home
from redact.search import open_index

NO_OVERRIDE = ["--bounding-set", "-dac_override,-dac_read_search,-fowner"]


def as_plain_user(*args: str | Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run the CLI bound by file permissions: as root (CI), without the capabilities that let root write anything."""
    cmd = [*REDACT, *map(str, args)]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.fail("needs setpriv (util-linux) to run without root's permission overrides")
        cmd = [setpriv, *NO_OVERRIDE, *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, env=env)


def read_only(path: Path) -> None:
    for p in (path, *path.rglob("*")):
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def writable(path: Path) -> None:
    for p in (path, *path.rglob("*")):
        p.chmod(p.stat().st_mode | stat.S_IWUSR)


def snapshot(path: Path) -> dict[str, tuple[int, int]]:
    return {p.relative_to(path).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(path.rglob("*"))}


@pytest.fixture
def baked(tmp_path: Path) -> Path:
    """A read-only model cache holding a copy of the real one's verified models and no detector exports, as an image
    that bakes the models in. Copied, not linked: a link would leave the real, writable folders behind it."""
    home = tmp_path / "models-ro"
    shutil.copytree(redact_home() / "models", home / "models")
    read_only(home)
    yield home
    writable(home)


def test_read_only_model_cache(tmp_path: Path, baked: Path) -> None:
    (tmp_path / "in").mkdir()
    clip = talking_clip(tmp_path / "in" / "stop.mp4", "Please step out of the car and show me your hands.")
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if k not in ("REDACT_INDEX", "REDACT_STATE", "XDG_STATE_HOME")}
    env.update(REDACT_HOME=str(baked), REDACT_STATE=str(state))
    cache = snapshot(baked)

    # plates on: the plate models' ONNX exports are made on first use, in the state home
    run = as_plain_user("run", clip, "-o", tmp_path / "out", env=env)
    assert run.returncode == 0, run.stderr
    assert "warning" not in run.stderr, run.stderr
    assert (tmp_path / "out" / "stop.redacted.mp4").is_file() and (tmp_path / "out" / "stop.transcript.json").is_file()
    assert len(list((state / "derived").glob("*.onnx"))) == 2  # one per default plate model
    assert snapshot(baked) == cache  # nothing written, changed or added in the model cache
    with open_index(state / "index.sqlite", create=False) as index:  # indexed where state lives
        hits = index.search("hands")
    assert [Path(h.file).name for h in hits] == ["stop.redacted.mp4"], hits

    # an image that baked the exports in as well, and nowhere to keep state at all: the batch uses the cache's
    # exports as they are, still publishes and marks the file done, and says what it skipped
    writable(baked)
    shutil.copytree(state / "derived", baked / "derived")
    read_only(baked)
    cache = snapshot(baked)
    state.chmod(0o555)
    env["REDACT_STATE"] = str(state / "cannot")
    (tmp_path / "out2").mkdir()
    batch = as_plain_user("batch", tmp_path / "in", "-o", tmp_path / "out2", env=env)
    assert batch.returncode == 0, batch.stderr
    assert "the transcript was not indexed" in batch.stderr and "1 done, 0 failed" in batch.stdout, batch
    again = as_plain_user("batch", tmp_path / "in", "-o", tmp_path / "out2", env=env)
    assert again.returncode == 0 and "1 file(s) already done" in again.stdout, again
    assert snapshot(baked) == cache
    state.chmod(0o755)
