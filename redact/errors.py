"""Errors a user can cause, kept apart from bugs so the CLI can answer each with one line and exit 2; and how
outputs are written so that a failure publishes nothing."""

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DISK_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)  # EFBIG: a file-size limit (RLIMIT_FSIZE, FAT32)


class UserError(Exception):
    """Bad input, bad option, missing or unverified model: the user can fix it; no traceback is shown."""


class ModelError(UserError):
    """A model is unknown, missing from the cache, or its file does not match the registry's SHA-256."""


class MediaError(UserError):
    """The input is missing, not a video, truncated or otherwise undecodable."""


class OutputError(UserError):
    """The outputs cannot be written: a full disk or a folder without write permission. Nothing was published."""


@contextmanager
def writing_to(outdir: str | os.PathLike[str]) -> Iterator[None]:
    """OS errors raised while writing into `outdir` that the user must fix (full disk, no permission) as
    OutputError; any other OSError stays a bug."""
    try:
        yield
    except OSError as e:
        if e.errno in DISK_FULL:
            raise OutputError(f"{outdir}: out of disk space writing the output ({os.strerror(e.errno)}); "
                              "nothing was published") from None
        if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise OutputError(f"{outdir}: cannot write the output ({os.strerror(e.errno)})") from None
        raise


def partial_path(path: Path) -> Path:
    """The hidden name an output is written under until it is complete and renamed to `path`: a reader never sees
    half a file, and `batch.remove_leftovers` knows what an interrupted run left."""
    return path.with_name(f".{path.name}.partial")


def write_text_atomic(path: Path, text: str) -> None:
    """`text` into `path` through its partial name, synced before the rename so a crash leaves old or new, never
    a torn file."""
    tmp = partial_path(path)
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
