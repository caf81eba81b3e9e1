"""redact: make body-camera video releasable under public-records law.

    from redact import Redactor, RedactOptions
    result = Redactor(RedactOptions(device="auto")).run("bodycam.mp4", "out/")

Stages, one module each: `video` (decode/encode), `detect`, `track`, `anonymize`, `audio` (with `transcribe`
and `pii`), `search`, `audit`; `pipeline` ties them. Review and release (decisions, render, the review page, the
package, signatures) are the subpackage `redact.review`. Names are imported lazily so that `redact search` and
`redact models list` do not pay for loading torch.
"""

from importlib import import_module

from redact.errors import MediaError, ModelError, UserError

_LAZY = {"Detections": "redact.detect", "RedactOptions": "redact.pipeline", "Redactor": "redact.pipeline",
         "RunResult": "redact.pipeline", "AudioOptions": "redact.audio", "open_index": "redact.search"}

__all__ = ["MediaError", "ModelError", "UserError", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'redact' has no attribute {name!r}")
