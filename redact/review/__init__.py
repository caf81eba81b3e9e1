"""Review and release: what happens to a run's plan after detection, and how it is proven.

`decisions` (a reviewer's decisions and their signed, hash-chained history), `render` (plan + decisions -> the
released files, the page's previews), `server` (the review page), `release` (the package for a requester), and
the chain of custody: `keys` (the agency's signing key), `custody` (what it signs and what is refused),
`credentials` (Content Credentials in the video), `verify` (`redact verify`). Imports point one way: this package
uses the engine's modules (video, anonymize, plan, audio); the engine's `pipeline` calls into it to start a
review, never the reverse.
"""
