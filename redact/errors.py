"""Errors a user can cause, kept apart from bugs so the CLI can answer each with one line and exit 2."""


class UserError(Exception):
    """Bad input, bad option, missing or unverified model: the user can fix it; no traceback is shown."""


class ModelError(UserError):
    """A model is unknown, missing from the cache, or its file does not match the registry's SHA-256."""


class MediaError(UserError):
    """The input is missing, not a video, truncated or otherwise undecodable."""


class OutputError(UserError):
    """The outputs cannot be written: a full disk or a folder without write permission. Nothing was published."""
