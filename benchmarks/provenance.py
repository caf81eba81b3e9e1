"""Where a result file's figures come from: the engine code that made them and the command that ran it.

Every benchmark writes its JSON through `write_result`, which stamps it with
- `code`: `sha256`, a fingerprint of the engine's sources (redact/**/*.py, by path and content: the same in any
  clone of the same sources, committed or not), the git `commit` checked out (None outside a git checkout) and
  `modified`, whether redact/ differed from that commit (then only `sha256` names the code);
- `command`: the command line that made the file, to run again.

Result files written before this carry `legacy` instead (what is known of their origin); README figures
(`benchmarks/readme_figures.py`) say which file they come from, and `tests/test_readme.py` checks both.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
import sys
from pathlib import Path

from redact.errors import write_text_atomic

ROOT = Path(__file__).resolve().parents[1]


def code_sha256(root: Path = ROOT) -> str:
    """Fingerprint of redact/**/*.py. Hashes the files, not the commit, so a result written before its commit
    (as benchmark runs are) still names its code, and a checkout elsewhere finds the same value."""
    digest = hashlib.sha256()
    for path in sorted((root / "redact").rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def _git(*args: str, root: Path = ROOT) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def code_stamp(root: Path = ROOT) -> dict:
    commit = _git("rev-parse", "HEAD", root=root)
    modified = bool(_git("status", "--porcelain", "--", "redact", root=root)) if commit else None
    return {"sha256": code_sha256(root), "commit": commit, "modified": modified}


def command(script: str, argv: list[str] | None = None) -> str:
    """The command line that ran `script` (a module under benchmarks/) with `argv` (sys.argv[1:] when None)."""
    module = Path(script).resolve().relative_to(ROOT).with_suffix("").as_posix().replace("/", ".")
    return shlex.join(["python", "-m", module, *(sys.argv[1:] if argv is None else argv)])


# taken when a benchmark imports this, before its run: it describes the loaded code even if files change meanwhile
CODE = code_stamp()


def write_result(path: Path, result: dict, script: str, argv: list[str] | None = None, indent: int = 1) -> None:
    """`result` into `path` (atomically), stamped with `code` and `command`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    stamped = {"code": CODE, "command": command(script, argv), **result}
    write_text_atomic(path, json.dumps(stamped, indent=indent, default=float) + "\n")
