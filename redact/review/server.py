"""The review page: a local web server where a records officer checks a run's redactions and records decisions.

`redact review OUTDIR` serves one page for the videos of OUTDIR that have a plan. The page shows each frame as
the render would make it (or the original, with the boxes outlined), lists the tracks in review groups, the
transcript with its spoken-PII spans, and records each change through `Decisions.apply` at once, then renders.

The server holds the unredacted original and every face in it, so it is locked down as a Jupyter server is:
it binds to loopback, every request needs the token printed at start (query, the cookie the page sets, or the
X-Redact-Token header), the Host header must be ours (a DNS-rebinding page cannot reach it; bound to every
interface with `--host 0.0.0.0`, any Host is ours and the token alone keeps such a page out), a POST needs the
header token, a JSON body and no foreign Origin (no cross-site form can change a decision), and no filesystem
path is ever built from a request string: videos are looked up among the stems found in OUTDIR, static files
in a fixed list.
"""

from __future__ import annotations

import json
import secrets
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

import cv2
import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from redact.detect import CLASS_NAMES
from redact.errors import UserError
from redact.plan import Plan, plan_path
from redact.review.custody import Custody
from redact.review.decisions import (
    Conflict,
    Decisions,
    Reasons,
    decisions_path,
    digest,
    load,
    load_reasons,
    summary,
)

COOKIE = "redact_token"
HEADER = "x-redact-token"
LOOPBACK = ("127.0.0.1", "localhost", "[::1]")
WILDCARD = ("0.0.0.0", "::", "")  # bound addresses that listen on every interface
ANY_HOST = "*"  # in a set of accepted Host values: any Host (a server bound to every interface)
LOUDNESS_STEP = 0.1  # seconds of sound a bar of the timeline's audio lane stands for
OPERATION = 'an operation {"op": ...}'  # what a change's body must be
HISTORY_SHOWN = 200  # the last entries of the decisions' history the page lists (who changed what, when)
STATIC = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}  # the only files served
MAX_BOX_FRAMES = 1000  # frames of boxes one request may ask for
THUMB_HEIGHT = 72
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
                               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the token is in the first URL
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def _static(name: str) -> bytes:
    return (files("redact") / "static" / name).read_bytes()


def static_files(served: dict[str, str]) -> Callable[[Request], Response]:
    """The route handler of a page's own static files: `served` maps the only names served to their media type
    (no path from a request is ever opened), everything else is a 404."""

    def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in served:
            return PlainTextResponse("not found", 404)
        return Response(_static(name), media_type=served[name])

    return static


# ------------------------------------------------------------------------------------------------ one video
@dataclass
class RenderStatus:
    state: str = "idle"  # idle, running, done, failed
    done: int = 0
    total: int = 0
    error: str | None = None

    def as_json(self) -> dict:
        return {"state": self.state, "done": self.done, "total": self.total, "error": self.error}


@dataclass
class Video:
    """One stem of OUTDIR: its plan (open), decisions (reloaded when the file changes), previewer and thumbnails.
    `lock` serialises the plan's connection, the previewer's decoder and every read-modify-write of the decisions."""

    outdir: Path
    stem: str
    reasons: Reasons
    custody: Custody = field(default_factory=Custody.resolve)  # signs each change, checks the history's signatures
    plan: Plan = field(init=False)
    lock: threading.RLock = field(default_factory=threading.RLock)
    render_status: RenderStatus = field(default_factory=RenderStatus)
    _decisions: Decisions | None = None
    _outside: list[str] = field(default_factory=list)
    _seen: tuple[int, int] | None = None
    _previewer: object | None = None
    _original: Path | None = None
    _thumbs: dict[int, bytes] = field(default_factory=dict)
    _audio: Path | None = None
    _loudness: list[int] | None = None
    _rendered: tuple[tuple[int, int] | None, dict] = (None, {})  # the audit log's stat and review section

    def __post_init__(self) -> None:
        from redact.review.render import bounds_of

        self.plan = Plan(plan_path(self.outdir, self.stem))
        self.bounds = bounds_of(self.plan)
        self.group_of = {t.id: t.group for t in self.plan.tracks()}

    @property
    def path(self) -> Path:
        return decisions_path(self.outdir, self.stem)

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_size

    def decisions(self) -> Decisions:
        """The decisions as on disk now; an outside edit found is recorded in the history (and saved) at once, so
        that the head the page reads is stable."""
        with self.lock:
            seen = self._stat()
            if self._decisions is None or seen != self._seen:
                self._decisions, self._outside = load(self.path, self.reasons, self.bounds, self.custody)
                if self._outside:
                    self._decisions.save()
                self._seen = self._stat()
            return self._decisions

    def apply(self, op: dict, by: str, base: str | None) -> Decisions:
        """Apply and save one operation (Conflict when `base` is not the current head). Without the agency's key,
        refused for a video whose audit log is signed: the change would be an unsigned entry that every later
        render refuses (`Custody`)."""
        with self.lock:
            if self.custody.signer is None:
                from redact.review.render import read_log

                self.custody.check_log(read_log(self.outdir, self.stem), self.outdir / f"{self.stem}.redaction.json")
            decisions = self.decisions()
            before = (json.dumps(decisions.state), list(decisions.history))
            try:
                decisions.apply(op, by, self.reasons, self.bounds, base=base)
                decisions.save()
            except BaseException:
                decisions.state, decisions.history = json.loads(before[0]), before[1]
                raise
            self._seen = self._stat()
            return decisions

    def rendered(self, decisions: Decisions) -> dict:
        """Whether the release files are of the decisions as they are now: the last render recorded the hash of the
        decisions it rendered in the audit log, which `redact release` compares with the decisions on disk."""
        from redact.review.render import read_log

        log = self.outdir / f"{self.stem}.redaction.json"
        try:
            st = log.stat()
            seen = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            seen = None
        if seen is None or seen != self._rendered[0]:
            review = {}
            if seen is not None:
                try:
                    review = read_log(self.outdir, self.stem).get("review") or {}
                except UserError:
                    pass  # no render to speak of: a render is needed
            self._rendered = (seen, {"sha256": review.get("decisions_sha256"), "at": review.get("rendered")})
        recorded = self._rendered[1]
        return {"current": recorded["sha256"] == digest(decisions.state), "at": recorded["at"]}

    def original(self) -> Path:
        """The original video, checked once against the SHA-256 the plan recorded."""
        from redact.review.render import check_original

        if self._original is None:
            self._original = check_original(self.plan.meta["input"])
        return self._original

    def previewer(self):
        from redact.review.render import Previewer

        if self._previewer is None:
            self._previewer = Previewer(self.plan, self.original())
        return self._previewer

    def frame(self, index: int, view: str) -> np.ndarray:
        if not 0 <= index < self.plan.frame_count:
            raise UserError(f"frame {index} is outside the video's 0..{self.plan.frame_count - 1}")
        with self.lock:
            state = self.decisions().state
            return self.previewer().frame(index, state, view)

    def thumb(self, track: int) -> bytes:
        """A JPEG crop around the track's best detection in the original (kept: tracks never change)."""
        with self.lock:
            if track not in self._thumbs:
                row = next(t for t in self.plan.tracks() if t.id == track)
                boxes = self.plan.track_boxes(track)
                at = boxes.frame == row.best_frame
                frame = row.best_frame if at.any() else int(boxes.frame[0])
                x1, y1, x2, y2 = boxes.dets.xyxy[boxes.frame == frame][0]
                image = self.previewer().source.get(frame)
                h, w = image.shape[:2]
                pad = 0.15 * max(x2 - x1, y2 - y1)
                x1, y1 = int(max(0, x1 - pad)), int(max(0, y1 - pad))
                x2, y2 = int(min(w, x2 + pad)), int(min(h, y2 + pad))
                crop = image[y1:max(y2, y1 + 1), x1:max(x2, x1 + 1)]
                scale = THUMB_HEIGHT / crop.shape[0]
                crop = cv2.resize(crop, (max(1, round(crop.shape[1] * scale)), THUMB_HEIGHT), interpolation=cv2.INTER_AREA)
                self._thumbs[track] = jpeg(crop)
            return self._thumbs[track]

    def audio(self) -> Path:
        """The original's sound as 16 kHz mono WAV for the page's player (the reviewer hears what was said, to find
        what the PII rules missed), made once into a private temporary folder that goes with the server."""
        import tempfile
        import wave
        import weakref

        from redact.review.render import speech_tracks
        from redact.transcribe import iter_audio

        with self.lock:
            if self.plan.video.get("audio_codec") is None:
                raise LookupError("no audio")
            if self._audio is None:
                folder = tempfile.mkdtemp(prefix="redact-review-")  # mode 0700: the unredacted sound stays private
                weakref.finalize(self, shutil.rmtree, folder, True)
                path = Path(folder) / "audio.wav"
                tracks = []  # each transcribed track, decoded once: the page plays them mixed into one
                for track in speech_tracks(self.plan.speech) or [1]:
                    raw = Path(folder) / f"track{track}.raw"
                    with open(raw, "wb") as f:
                        for block in iter_audio(self.original(), rate=16000, layout="mono", fmt="s16", stream=track - 1):
                            f.write(block.tobytes())
                    tracks.append(np.memmap(raw, np.int16, "r") if raw.stat().st_size else np.zeros(0, np.int16))
                with wave.open(str(path), "wb") as out:
                    out.setnchannels(1)
                    out.setsampwidth(2)
                    out.setframerate(16000)
                    length = max(len(t) for t in tracks)
                    for a in range(0, length, 16000 * 60):
                        mix = np.zeros(min(16000 * 60, length - a), np.int32)
                        for t in tracks:
                            part = t[a:a + len(mix)]
                            mix[:len(part)] += part
                        out.writeframes(mix.clip(-32768, 32767).astype(np.int16).tobytes())
                del tracks
                for raw in Path(folder).glob("track*.raw"):
                    raw.unlink()
                self._audio = path
            return self._audio

    def loudness(self) -> list[int]:
        """The original sound's peak every LOUDNESS_STEP seconds (0-100, of full scale), for the timeline's audio lane:
        where someone speaks, seen against what is bleeped. Read from the page's WAV a minute at a time, once."""
        import wave

        with self.lock:
            if self._loudness is None:
                peaks = []
                with wave.open(str(self.audio())) as w:
                    rate = w.getframerate()
                    step = round(rate * LOUDNESS_STEP)
                    while chunk := w.readframes(rate * 60):
                        samples = np.abs(np.frombuffer(chunk, np.int16).astype(np.int32))
                        bins = -(-len(samples) // step)
                        padded = np.zeros(bins * step, np.int32)
                        padded[:len(samples)] = samples
                        peaks += (padded.reshape(bins, step).max(1) * 100 // 32768).tolist()
                self._loudness = peaks
            return self._loudness

    def boxes(self, first: int, last: int) -> dict:
        """Each frame's plan boxes (as the reviewer's box fixes correct them; `was`: the plan's own) with whether the
        decisions keep them redacted, and the regions' boxes."""
        from redact.review.render import RenderSpec

        first, last = max(0, first), min(last, self.plan.frame_count - 1, first + MAX_BOX_FRAMES - 1)
        with self.lock:
            state = self.decisions().state
            spec = RenderSpec.of(state)
            fb = self.plan.boxes(first, last)
            frames: dict[int, list] = {}
            for f, box, cls, tid in zip(fb.frame.tolist(), fb.dets.xyxy, fb.dets.cls.tolist(),
                                        fb.dets.track_id.tolist(), strict=True):
                fixed = spec.fixed(tid, f, box)
                frames.setdefault(f, []).append({"t": tid, "g": self.group_of.get(tid, tid), "c": CLASS_NAMES[cls],
                                                 "b": [round(float(v), 1) for v in fixed], "r": not spec.released(tid, f),
                                                 **({"was": [round(float(v), 1) for v in box]} if fixed is not box else {})})
            for r in state["regions"]:
                a, b = max(r["frames"][0], first), min(r["frames"][1], last)
                if a > b:
                    continue
                for f in range(a, b + 1):
                    box = self.previewer().region_box(r, f)
                    frames.setdefault(f, []).append({"region": r["id"], "b": [round(float(v), 1) for v in box], "r": True})
            return {"first": first, "last": last, "frames": {str(k): v for k, v in sorted(frames.items())}}

    def info(self) -> dict:
        """Everything the page shows of the video apart from frames and boxes."""
        from redact.review.render import speech_redactions

        with self.lock:
            decisions = self.decisions()
            tracks = {t.id: t for t in self.plan.tracks()}
            sizes = self.plan.best_sizes()
            groups = [{"id": g.id, "cls": CLASS_NAMES[g.cls], "first": g.first, "last": g.last, "detections": g.detections,
                       "max_score": round(g.max_score, 3), "best_track": g.best_track, "doubts": list(g.doubts),
                       "overlapping": g.overlapping, "looked": list(g.looked),
                       "size": sizes.get(g.best_track),
                       "tracks": [{"id": t, "first": tracks[t].first, "last": tracks[t].last,
                                   "detections": tracks[t].detections, "max_score": round(tracks[t].max_score, 3)}
                                  for t in g.tracks]}
                      for g in self.plan.groups()]
            speech = self.plan.speech
            words, spans = [], []
            if speech is not None:
                words = [{"i": i, "start": w["start"], "end": w["end"], "word": w["word"], "speaker": w.get("speaker", ""),
                          "track": track} for i, (track, w) in enumerate((s.get("track", 1), w) for s in speech["segments"]
                                                                          for w in s["words"])]
                _, spans = speech_redactions(speech, decisions.state["words"], self.plan.meta["render"].get("pad", 0.1))
            video = self.plan.video
            fps = video.get("fps") or 30.0
            times = self.plan.times()
            steady = len(times) and np.abs(times - times[0] - np.arange(len(times)) / fps).max() < 1e-3
            return {
                "stem": self.stem,
                "video": {"width": video["width"], "height": video["height"], "fps": fps, "frames": self.plan.frame_count,
                          "duration": video.get("duration"), "start": round(float(times[0]), 4) if len(times) else 0.0,
                          "audio": video.get("audio_codec") is not None},
                # every frame's time only where the frame rate varies: an hour at 30 fps would be 1 MB of JSON
                "times": None if steady else [round(float(t), 4) for t in times],
                "groups": groups, "words": words, "spans": spans,
                "decisions": decisions.state, "head": decisions.head, "history": len(decisions.history),
                "log": [{"n": e["n"], "at": e["at"], "by": e["by"], "what": summary(e)}
                        for e in decisions.history[-HISTORY_SHOWN:]],
                "outside_edits": self._outside,
                "reasons": [{"code": r.code, "label": r.label, "statute": r.statute} for r in self.reasons.codes.values()],
                "auto_reason": self.reasons.auto,
                "render": self.render_status.as_json(), "rendered": self.rendered(decisions),
            }

    def start_render(self) -> bool:
        """Render in a background thread; False when one is running already."""
        from redact.review.render import render

        with self.lock:
            if self.render_status.state == "running":
                return False
            status = self.render_status = RenderStatus("running", 0, self.plan.frame_count)

        def progress(done: int, total: int) -> None:
            status.done, status.total = done, total

        def work() -> None:
            try:
                render(self.outdir, self.stem, reasons=self.reasons, progress=progress, custody=self.custody)
                status.state = "done"
            except UserError as e:
                status.error, status.state = str(e), "failed"
            except Exception as e:  # noqa: BLE001 - reported to the page, which has no other way to learn of it
                status.error, status.state = f"internal error: {type(e).__name__}: {e}", "failed"

        threading.Thread(target=work, name=f"render-{self.stem}", daemon=True).start()
        return True

    def release(self, case: str, requester: str, dest: Path):
        """The release package of the last render, written into `dest` (`redact.review.release.release`: it refuses
        decisions nobody approved or changed since the render). Never while a render runs: it would package the
        video being replaced."""
        from redact.review.release import release

        with self.lock:
            if self.render_status.state == "running":
                raise Conflict("a render is running; release once it has finished.")
            return release(self.outdir, self.stem, case=case, requester=requester, dest=dest,
                           reasons=self.reasons.source, custody=self.custody)


def jpeg(image: np.ndarray, quality: int = 88) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise UserError("could not encode the frame as JPEG")
    return data.tobytes()


# ------------------------------------------------------------------------------------------------ the guard
class Guard:
    """ASGI middleware refusing, before any route runs, every request that is not from the page's own origin with
    the token. Refusals write nothing: they never reach a handler.

    With `user_header` (a server behind an agency's reverse proxy, which authenticates people and names them in
    that header) the header replaces the token: a request without it is refused with 401; changes still need a
    JSON body from our own origin."""

    def __init__(self, app: ASGIApp, token: str, hosts: set[str] | None, user_header: str | None = None):
        self.app, self.token, self.hosts = app, token, hosts
        self.user_header = user_header.lower() if user_header else None

    def _host_ok(self, host: str) -> bool:
        if self.hosts is not None:
            return ANY_HOST in self.hosts or host in self.hosts
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return name in LOOPBACK

    def _same(self, given: str | None) -> bool:
        return given is not None and secrets.compare_digest(given.encode(), self.token.encode())

    def refusal(self, request: Request) -> tuple[int, str] | None:
        host = request.headers.get("host", "")
        if not self._host_ok(host):
            return 403, "this server answers only to the address it listens on"
        header = request.headers.get(HEADER)
        if self.user_header is not None:
            if not request.headers.get(self.user_header, "").strip():
                return 401, f"the {self.user_header} header naming the user is required"
        else:
            given = [t for t in (request.query_params.get("token"), request.cookies.get(COOKIE), header) if t is not None]
            if not given:
                return 401, "token required (open the URL the server printed)"
            if not all(self._same(t) for t in given):
                return 403, "wrong token"
        if request.method not in ("GET", "HEAD"):
            if self.user_header is None and not self._same(header):
                return 403, f"changes need the {HEADER} header"
            origin = request.headers.get("origin")
            if origin is not None and origin != f"http://{host}":
                return 403, "cross-origin request refused"
            if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
                return 403, "cross-site request refused"
            if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
                return 415, "changes must be sent as application/json"
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1008})
            return
        refused = self.refusal(Request(scope))
        if refused is not None:
            await PlainTextResponse(refused[1], refused[0], headers=SECURITY_HEADERS)(scope, receive, send)
            return

        async def secured(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers += [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()
                            if k.lower().encode() not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, secured)


# ------------------------------------------------------------------------------------------------ the app
async def json_object(request: Request, what: str) -> dict:
    """The request's body, a JSON object; a UserError (a 400 saying so) when it is not JSON or not `what`."""
    try:
        body = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError("the body is not JSON") from None
    if not isinstance(body, dict):
        raise UserError(f"the body must be {what}")
    return body


async def _user_error(request: Request, exc: Exception) -> Response:
    return PlainTextResponse(str(exc), 400)


async def _not_found(request: Request, exc: Exception) -> Response:
    return PlainTextResponse("not found", 404)


ERROR_HANDLERS = {UserError: _user_error, 404: _not_found}  # a user's mistake is a 400 with its message, not a 500


def create_app(outdir: str | Path, reasons: Reasons | None = None, token: str | None = None, *,
               hosts: set[str] | None = None, reviewer: str | None = None, custody: Custody | None = None,
               releases: str | Path | None = None) -> Starlette:
    """The review app for the videos of `outdir`. `token` (random when None) is in `app.state.token`; `hosts`
    are the Host header values accepted (None: any port of a loopback name, for tests); `reviewer` prefills the
    page's reviewer name; `custody` signs the changes (default: the agency's key where there is one); the page's
    release packages go into `releases` (default: OUTDIR/releases)."""
    outdir = Path(outdir)
    if not outdir.is_dir():
        raise UserError(f"{outdir}: no such folder")
    releases = Path(releases) if releases else outdir / "releases"
    reasons = reasons or load_reasons()
    custody = custody or Custody.resolve()
    token = token or secrets.token_urlsafe(32)
    videos: dict[str, Video] = {}
    lock = threading.Lock()

    def stems() -> list[str]:
        from redact.review.render import stems as found

        return found(outdir)

    def video(request: Request) -> Video:
        """The stem named in the URL, if (and only if) it is one of OUTDIR's plans."""
        stem = request.path_params["stem"]
        with lock:
            if stem not in videos:
                if stem not in stems():
                    raise LookupError(stem)
                videos[stem] = Video(outdir, stem, reasons, custody)
            return videos[stem]

    def page(request: Request) -> Response:
        html = _static("index.html").decode()
        html = html.replace("{{TOKEN}}", token).replace("{{REVIEWER}}", _attr(reviewer or ""))
        response = Response(html, media_type="text/html; charset=utf-8")
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/")
        return response

    static = static_files(STATIC)

    def list_videos(request: Request) -> Response:
        return JSONResponse({"outdir": str(outdir), "videos": stems()})

    def info(request: Request) -> Response:
        return JSONResponse(video(request).info())

    def boxes(request: Request) -> Response:
        try:
            first, last = int(request.query_params["first"]), int(request.query_params["last"])
        except (KeyError, ValueError):
            return PlainTextResponse("first and last must be frame numbers", 400)
        return JSONResponse(video(request).boxes(first, last))

    def frame(request: Request) -> Response:
        view = request.query_params.get("view", "preview")
        if view not in ("preview", "original"):
            return PlainTextResponse("view must be preview or original", 400)
        image = video(request).frame(request.path_params["n"], view)
        return Response(jpeg(image), media_type="image/jpeg")

    def audio(request: Request) -> Response:
        return FileResponse(video(request).audio(), media_type="audio/wav")  # answers Range requests (seeking)

    def loudness(request: Request) -> Response:
        return JSONResponse({"step": LOUDNESS_STEP, "peaks": video(request).loudness()})

    def thumb(request: Request) -> Response:
        v = video(request)
        if request.path_params["track"] not in v.group_of:
            return PlainTextResponse("no such track", 404)
        return Response(v.thumb(request.path_params["track"]), media_type="image/jpeg")

    async def change(request: Request) -> Response:
        v = video(request)
        body = await json_object(request, OPERATION)
        if not isinstance(body.get("op"), str):
            return PlainTextResponse(f"the body must be {OPERATION}", 400)
        base, by = body.pop("base", None), body.pop("by", None)
        if base is None:
            return PlainTextResponse("an operation must name the head it was based on (base)", 400)
        if v.render_status.state == "running":
            return PlainTextResponse("a render is running; wait for it to finish", 409)
        from starlette.concurrency import run_in_threadpool

        try:
            decisions = await run_in_threadpool(v.apply, body, by, base)
        except Conflict as e:
            return PlainTextResponse(str(e), 409)
        return JSONResponse({"decisions": decisions.state, "head": decisions.head, "history": len(decisions.history),
                             "change": summary(decisions.history[-1])})

    def head(request: Request) -> Response:
        """The decisions' head, for pages to learn of others' changes (polled): with what changed after `since`."""
        decisions = video(request).decisions()
        return JSONResponse({"head": decisions.head, "history": len(decisions.history),
                             "changes": decisions.changes_since(request.query_params.get("since"))})

    def render_get(request: Request) -> Response:
        return JSONResponse(video(request).render_status.as_json())

    def render_post(request: Request) -> Response:
        v = video(request)
        if not v.start_render():
            return PlainTextResponse("a render is running already", 409)
        return JSONResponse(v.render_status.as_json(), 202)

    async def release_post(request: Request) -> Response:
        v = video(request)
        body = await json_object(request, "{\"case\": ..., \"requester\": ...}")
        case, requester = body.get("case"), body.get("requester")
        if not isinstance(case, str) or not case.strip() or not isinstance(requester, str) or not requester.strip():
            return PlainTextResponse("Give the case or request id and the requester's name.", 400)
        from starlette.concurrency import run_in_threadpool

        try:
            result = await run_in_threadpool(v.release, case, requester, releases)
        except Conflict as e:
            return PlainTextResponse(str(e), 409)
        signer = v.custody.signer
        return JSONResponse({"folder": str(result.folder), "zip": str(result.zip), "files": len(result.files),
                             "key": signer.fingerprint if signer is not None else None})

    routes = [
        Route("/", page),
        Route("/static/{name}", static),
        Route("/api/videos", list_videos),
        Route("/api/v/{stem}", info),
        Route("/api/v/{stem}/boxes", boxes),
        Route("/api/v/{stem}/frame/{n:int}.jpg", frame),
        Route("/api/v/{stem}/thumb/{track:int}.jpg", thumb),
        Route("/api/v/{stem}/audio.wav", audio),
        Route("/api/v/{stem}/loudness", loudness),
        Route("/api/v/{stem}/decisions", change, methods=["POST"]),
        Route("/api/v/{stem}/head", head),
        Route("/api/v/{stem}/render", render_get, methods=["GET"]),
        Route("/api/v/{stem}/render", render_post, methods=["POST"]),
        Route("/api/v/{stem}/release", release_post, methods=["POST"]),
    ]
    app = Starlette(routes=routes, exception_handlers={**ERROR_HANDLERS, LookupError: _not_found})
    app.add_middleware(Guard, token=token, hosts=hosts)
    app.state.token = token
    app.state.videos = videos
    return app


def _attr(text: str) -> str:
    """`text` safe inside a double-quoted HTML attribute."""
    return (text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;"))


def allowed_hosts(host: str, port: int) -> set[str]:
    """The Host header values of a server bound to host:port: the loopback names and `host` itself, or any Host for
    a server bound to every interface (0.0.0.0, ::), which a LAN reaches by whatever address or name it knows the
    machine by. A DNS-rebinding page then gets as far as the token check, which it cannot pass: the token is only
    in the printed URL and the page's SameSite=Strict cookie for the real address."""
    if host in WILDCARD:
        return {ANY_HOST}
    names = set(LOOPBACK) | {host if ":" not in host else f"[{host}]"}
    return {f"{name}:{port}" for name in names}


def serve(outdir: str | Path, *, host: str = "127.0.0.1", port: int = 0, reasons: Reasons | None = None,
          reviewer: str | None = None, custody: Custody | None = None, releases: str | Path | None = None,
          announce=print) -> None:
    """Serve the review page until interrupted; `announce` gets the URL (with the token) once the port is bound."""
    serve_app(lambda hosts: create_app(outdir, reasons, hosts=hosts, reviewer=reviewer, custody=custody,
                                       releases=releases),
              host=host, port=port,
              announce=lambda app, shown: announce(f"{shown}/?token={app.state.token}"))


def serve_app(build, *, host: str, port: int, announce) -> None:
    """Bind host:port, build the app with `build(allowed Host header values)`, call `announce(app, base URL)` and
    serve until interrupted (the review page and the search page start the same way)."""
    import socket

    import uvicorn

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.listen(128)  # connections from the moment the URL is printed wait in the backlog until uvicorn accepts
    port = sock.getsockname()[1]
    try:
        app = build(allowed_hosts(host, port))
    except BaseException:
        sock.close()
        raise
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else (f"[{host}]" if ":" in host else host)
    announce(app, f"http://{shown}:{port}")
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    server.run(sockets=[sock])
