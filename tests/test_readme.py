"""The README's measured figures are the result files' (no model runs here: the files are read, not made).

Its tables and inline figures sit in generated blocks (`benchmarks/readme_figures.py`); each result file names the
code and the command that made it (`benchmarks/provenance.py`), or says in `legacy` what is known of a file
written before that was recorded."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from benchmarks.provenance import ROOT, code_sha256, command
from benchmarks.readme_figures import BLOCK, BLOCKS, README, RESULTS, regenerate, stale


@pytest.fixture(scope="session", autouse=True)
def models_ready() -> None:
    """Overrides the conftest check: these tests read files, they load no model."""


def test_readme_figures_are_the_result_files() -> None:
    text = README.read_text(encoding="utf-8")
    names = [m.group(1) for m in BLOCK.finditer(text)]
    assert sorted(names) == sorted(BLOCKS), "each block of readme_figures.BLOCKS appears once in README.md"
    assert stale(text) == [], "README.md differs from the results: run `python -m benchmarks.readme_figures`"
    assert regenerate(text) == text


def test_a_changed_figure_is_caught() -> None:
    text = README.read_text(encoding="utf-8")
    m = re.search(r"<!-- figures: leak -->.*?(\d+\.\d\d%)", text, re.S)
    changed = text[:m.start(1)] + "0.42%" + text[m.end(1):]
    assert stale(changed) == ["leak"]


def test_every_result_file_names_its_code_and_command() -> None:
    for path in sorted(RESULTS.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if "legacy" in data:
            assert isinstance(data["legacy"], str) and data["legacy"], path.name
            continue
        assert re.fullmatch(r"[0-9a-f]{12}", data["code"]["sha256"]), path.name
        assert {"commit", "modified"} <= data["code"].keys(), path.name
        assert data["command"].startswith("python -m benchmarks."), path.name


def test_files_the_readme_cites_exist() -> None:
    text = README.read_text(encoding="utf-8")
    for name in set(re.findall(r"`(?:benchmarks/results/)?([\w.-]+\.json)`", text)):
        assert (RESULTS / name).is_file(), name
    for path in set(re.findall(r"`((?:docs|benchmarks|tests|scripts|redact)/[\w./-]+\.(?:md|py|sh))`", text)):
        assert (ROOT / path).is_file(), path


def test_stamp_names_the_code_and_the_command(tmp_path) -> None:
    """The stamp hashes redact/**/*.py by path and content, and records argv as given."""
    (tmp_path / "redact" / "sub").mkdir(parents=True)
    (tmp_path / "redact" / "a.py").write_text("x = 1\n")
    before = code_sha256(tmp_path)
    (tmp_path / "redact" / "sub" / "b.py").write_text("y = 2\n")
    nested = code_sha256(tmp_path)
    (tmp_path / "redact" / "sub" / "b.py").write_text("y = 3\n")
    assert len({before, nested, code_sha256(tmp_path)}) == 3
    assert command(str(ROOT / "benchmarks" / "leak_bench.py"), ["--seeds", "2,3", "--out", "a b.json"]) == \
        "python -m benchmarks.leak_bench --seeds 2,3 --out 'a b.json'"


def test_check_command() -> None:
    done = subprocess.run([sys.executable, "-m", "benchmarks.readme_figures", "--check"], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
