"""redact: make body-camera video releasable under public-records law.

    from redact import Redactor, RedactOptions
    result = Redactor(RedactOptions(device="auto")).run("bodycam.mp4", "out/")

Stages, one module each: `video` (decode/encode), `detect`, `track`, `anonymize`, `audit`; `pipeline` ties them.
"""

from redact.detect import Detections
from redact.errors import MediaError, ModelError, UserError
from redact.pipeline import RedactOptions, Redactor, RunResult

__all__ = ["Detections", "MediaError", "ModelError", "RedactOptions", "Redactor", "RunResult", "UserError"]
