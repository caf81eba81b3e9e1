"""Shared fixtures: the verified model cache and one CPU redactor per session (loading models is the slow part)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from redact.models import load_registry, verify

ROOT = Path(__file__).resolve().parents[1]
EVALDATA = ROOT.parent / "shared" / "evaldata"
REDACT = [sys.executable, "-m", "redact"]


@pytest.fixture(scope="session", autouse=True)
def models_ready(tmp_path_factory) -> None:
    """Tests use the real models: fail loudly (not skip) when the cache was not fetched. Transcripts that runs
    index go to a throwaway index, never the user's (the CLI reads REDACT_INDEX)."""
    missing = [spec.id for spec in load_registry().values() if verify(spec)]
    if missing:
        pytest.fail(f"models not fetched: {missing}; run `redact models fetch` (make test does)")
    os.environ["REDACT_INDEX"] = str(tmp_path_factory.mktemp("index") / "index.sqlite")
    # no agency key unless a test makes one: the user's own key (make demo makes one) never signs test outputs
    os.environ["REDACT_KEYS"] = str(tmp_path_factory.mktemp("keys"))
    for name in ("REDACT_SIGNING_KEY", "REDACT_SIGNING_CERT"):
        os.environ.pop(name, None)


@pytest.fixture(scope="session")
def redactor():
    """The default pipeline (faces, plates, transcription and audio redaction) on the CPU."""
    from redact.pipeline import RedactOptions, Redactor

    return Redactor(RedactOptions(device="cpu", index=os.environ["REDACT_INDEX"]))


NO_POSTGRES = "no PostgreSQL"  # the start of test_search's skip reason when no server could be started


def pytest_terminal_summary(terminalreporter) -> None:
    """Outside CI the PostgreSQL tests skip when no server can be started (test_search.pg_url): say so at the end,
    where nobody misses it, rather than in one of the -ra lines."""
    skipped = [r for r in terminalreporter.stats.get("skipped", [])
               if isinstance(r.longrepr, tuple) and NO_POSTGRES in str(r.longrepr[2])]
    if skipped:
        reason = str(skipped[0].longrepr[2]).removeprefix("Skipped: ")
        terminalreporter.write_sep("!", f"{len(skipped)} PostgreSQL tests NOT RUN", red=True, bold=True)
        terminalreporter.write_line(f"{reason}\nThe PostgreSQL search back end is untested here: run .ci/run (it "
                                    "installs and starts the server), or set REDACT_TEST_PG to a server's URL.",
                                    red=True)


def run_cli(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*REDACT, *map(str, args)], capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="session")
def grid_run(redactor, tmp_path_factory) -> Path:
    """One real run of the default pipeline on a real clip (a GRID talking face: one face track over all 75
    frames), shared by the review and release tests, which copy it before changing anything."""
    outdir = tmp_path_factory.mktemp("grid-run")
    redactor.run(EVALDATA / "video/grid/bbaf2n.mpg", outdir)
    return outdir


@pytest.fixture(scope="session")
def two_speakers_run(redactor, tmp_path_factory) -> Path:
    """A real run on GRID speakers filmed one after another (`media.film`, 25 fps, 36 grey frames between pieces):
    speaker A at the left, then 450 px (about 1.8 of its dilated boxes) to the right, then speaker B at the left,
    as far from where A was last seen: further apart than rows join by position (1.5 box sizes), within the reach
    the 1.4 s gaps allow where the bodies look alike (`redact.plan.far_links`). The plan is `two.plan.sqlite`."""
    from media import film

    outdir = tmp_path_factory.mktemp("two-speakers")
    film(outdir / "two.mp4", [("bbaf2n.mpg", 0), ("bbaf2n.mpg", 450), ("brbk7n.mpg", 0)])
    redactor.run(outdir / "two.mp4", outdir / "out")
    return outdir / "out"


def wait_until(page, expression: str, timeout: float = 15.0) -> None:
    """Polls a JavaScript expression from here until it is truthy. Playwright's wait_for_function compiles its
    predicate with eval() inside the page whenever the first check fails, and our pages' Content-Security-Policy
    (script-src 'self') rightly forbids eval: the test then fails or passes on timing. page.evaluate is not
    subject to the page's policy."""
    import time

    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout} s: {expression}")
        time.sleep(0.05)
