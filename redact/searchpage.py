"""The search page: analysts search every indexed transcript, hear the moment in the redacted video, export hits.

`redact serve INDEX_OR_OUTDIRS` serves one page over a transcript index (a SQLite file or a postgresql:// URL) or
over the transcripts found in output folders (indexed at start into a private temporary SQLite file). The page
asks `/api/search` (the query syntax of `redact search`, and its filters), plays a hit from a second before it,
and exports the hits as CSV.

Only redacted outputs are ever served: a hit's media is looked up by the SHA-256 the index holds, and played
only when the audit log beside it (<stem>.redaction.json) names that very file as the output of a redaction;
an original indexed by `redact transcribe` + `redact index` is listed but never played.

Access is locked down as the review page's (`review.Guard`): loopback and a token by default; behind an agency's
reverse proxy, `user_header` names the header that carries the authenticated user's name, and a request without
it gets 401 and nothing else. Every search, export and play is appended to the access log as one JSON line
(who, when, query, filters, number of hits, the moment played): access to criminal-justice records must be
auditable.
"""

from __future__ import annotations

import csv
import getpass
import io
import json
import os
import secrets
import tempfile
import threading
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from redact.errors import UserError
from redact.review.server import COOKIE, ERROR_HANDLERS, Guard, _attr, _static, static_files
from redact.search import QUERY_SYNTAX, RANK_WINDOW, Hit, Hits, Index, open_index, read_transcript

if TYPE_CHECKING:
    from redact.meaning import Embedder

STATIC = {"search.js": "text/javascript; charset=utf-8", "search.css": "text/css; charset=utf-8"}  # the only files served
PAGE_SIZE = 20
EXPORT_LIMIT = RANK_WINDOW  # hits in one CSV export: the most a search ranks
LEAD_IN = 1.0  # seconds played before a hit
REDACTED_SUFFIX = ".redacted.mp4"
LOG_SUFFIX = ".redaction.json"
FILTERS = ("file", "tag", "speaker", "track", "since", "until")
CSV_COLUMNS = ["file", "start", "end", "speaker", "text", "link"]


# ------------------------------------------------------------------------------------------- the index
def open_source(source: str | os.PathLike | list, *, workdir: Path | None = None, meaning: bool = False) -> Index:
    """The index to search: `source` is an index spec (a SQLite file, a postgresql:// URL), or one or more output
    folders whose transcripts (*.transcript.json) are indexed into `workdir`/index.sqlite (a private temporary
    folder when None), with meaning vectors when `meaning`. A video's tracks are indexed together, as `redact run`
    does."""
    sources = [source] if isinstance(source, str | os.PathLike) else list(source)
    if not sources:
        raise UserError("serve: name an index or one or more output folders")
    folders = [Path(s) for s in sources if Path(s).is_dir()]
    if not folders:
        if len(sources) > 1:
            raise UserError("serve: give one index, or output folders")
        return open_index(sources[0], create=False)
    if len(folders) != len(sources):
        missing = next(s for s in sources if not Path(s).is_dir())
        raise UserError(f"serve: {missing}: not an output folder (give one index, or output folders)")
    from redact.pipeline import indexed_transcript

    if workdir is None:
        workdir = Path(tempfile.mkdtemp(prefix="redact-search-"))  # 0700: the index holds what was said
    index = open_index(workdir / "index.sqlite")
    if workdir.name.startswith("redact-search-"):
        import shutil

        weakref.finalize(index, shutil.rmtree, workdir, True)
    by_media: dict[str, list[dict]] = {}
    for folder in folders:
        for path in sorted(folder.rglob("*.transcript.json")):
            transcript, media = read_transcript(path)
            by_media.setdefault(media, []).append(transcript)
    for media, transcripts in by_media.items():
        transcripts.sort(key=lambda t: t.get("track") or 1)
        index.add(indexed_transcript(transcripts), media_path=media, sha256=transcripts[0]["sha256"])
    if meaning:
        from redact.meaning import Embedder

        index.embed(Embedder.load())
    return index


def redacted_output(media_path: str) -> Path | None:
    """`media_path` if the audit log beside it names it as the output of a redaction (and not as its input),
    else None: the only files the page plays."""
    path = Path(media_path)
    if not path.name.endswith(REDACTED_SUFFIX) or not path.is_file():
        return None
    log_path = path.with_name(path.name[: -len(REDACTED_SUFFIX)] + LOG_SUFFIX)
    try:
        log = json.loads(log_path.read_text(encoding="utf-8"))
        output, source = log["output"]["path"], (log.get("input") or {}).get("path")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        return None
    resolved = str(path.resolve())
    return path if output == resolved and source != resolved else None


# ------------------------------------------------------------------------------------------- access log
class AccessLog:
    """Append-only JSON lines, one per search, export or play; each line is one write(2) on an O_APPEND file, so
    concurrent servers sharing the file never interleave within a line."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as e:
            raise UserError(f"cannot open the access log {self.path}: {e.strerror}") from None
        self._lock = threading.Lock()
        weakref.finalize(self, os.close, self._fd)

    def write(self, user: str, event: str, request: Request, **fields) -> None:
        entry = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"), "user": user, "event": event,
                 "client": request.client.host if request.client else None, **fields}
        line = (json.dumps(entry, ensure_ascii=False) + "\n").encode()
        with self._lock:
            os.write(self._fd, line)


def default_log() -> Path:
    from redact.models import state_home

    return state_home() / "search-access.jsonl"


# ------------------------------------------------------------------------------------------- the app
@dataclass(frozen=True)
class SearchRequest:
    """A search as the page (or a CSV link) asks for it: the query and its filters, checked by Index.search."""

    query: str
    filters: dict
    meaning: bool = False

    @classmethod
    def of(cls, request: Request) -> SearchRequest:
        params = request.query_params
        filters = {k: params.get(k, "").strip() for k in FILTERS if params.get(k, "").strip()}
        if "track" in filters:
            try:
                filters["track"] = int(filters["track"])
            except ValueError:
                raise UserError(f"the audio track must be a number, not {filters['track']!r}") from None
        return cls(params.get("q", ""), filters, params.get("meaning", "") in ("1", "true", "on"))

    def run(self, index: Index, limit: int, offset: int = 0, embedder: Embedder | None = None) -> Hits:
        f = self.filters
        kwargs = {"file_glob": f.get("file"), "tag": f.get("tag"), "speaker": f.get("speaker"),
                  "track": f.get("track"), "since": f.get("since"), "until": f.get("until")}
        if self.meaning and embedder is None:
            raise UserError("this index has no meaning vectors (redact index --meaning)")
        return index.search(self.query, limit=limit, offset=offset, meaning=embedder if self.meaning else None, **kwargs)

    def logged(self) -> dict:
        return {"query": self.query, "filters": self.filters, "meaning": self.meaning}


def hit_json(hit: Hit, playable: bool) -> dict:
    return {"file": hit.file, "name": Path(hit.file).name, "start": round(hit.start, 3), "end": round(hit.end, 3),
            "speaker": hit.speaker, "track": hit.track, "recorded": hit.recorded, "snippet": hit.snippet,
            "text": hit.text, "tags": list(hit.tags), "media": hit.sha256 if playable else None,
            "score": round(hit.score, 4), "by": hit.by}


def moment_link(base: str, hit: Hit) -> str:
    """A link that opens the page playing this hit (the token is not in it: the reader logs in their own way)."""
    return f"{base}/?{urlencode({'play': hit.sha256, 't': f'{hit.start:.3f}'})}"


def create_app(index: Index, *, access_log: Path, token: str | None = None, hosts: set[str] | None = None,
               user_header: str | None = None) -> Starlette:
    """The search app over `index`. `token` (random when None) is in `app.state.token` (unused with
    `user_header`); `hosts` are the Host header values accepted (None: any port of a loopback name)."""
    token = token or secrets.token_urlsafe(32)
    log = AccessLog(access_log)
    lock = threading.Lock()  # one connection per index: searches take turns
    local_user = getpass.getuser()
    speakers = index.speakers()
    embedder = None
    if index.vector_model() is not None:
        from redact.meaning import Embedder

        embedder = Embedder.for_index(index)
        index.nearest(embedder)  # the vectors in memory before the first search
    playable: dict[str, Path | None] = {}  # sha256 -> the redacted output, checked once

    def user(request: Request) -> str:
        return request.headers.get(user_header, "").strip() if user_header else local_user

    def media_of(sha256: str) -> Path | None:
        if sha256 not in playable:
            with lock:
                path = index.media(sha256)
            playable[sha256] = redacted_output(path) if path else None
        return playable[sha256]

    def page(request: Request) -> Response:
        html = _static("search.html").decode()
        html = html.replace("{{TOKEN}}", "" if user_header else token).replace("{{USER}}", _attr(user(request)))
        html = html.replace("{{SYNTAX}}", _attr(QUERY_SYNTAX))
        response = Response(html, media_type="text/html; charset=utf-8")
        if not user_header:
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/")
        return response

    static = static_files(STATIC)

    def info(request: Request) -> Response:
        return JSONResponse({"user": user(request), "speakers": speakers, "page_size": PAGE_SIZE,
                             "syntax": QUERY_SYNTAX, "meaning": embedder is not None})

    def search(request: Request) -> Response:
        asked = SearchRequest.of(request)
        try:
            page_no = max(0, int(request.query_params.get("page", "0")))
        except ValueError:
            return PlainTextResponse("page must be a number", 400)
        with lock:
            hits = asked.run(index, PAGE_SIZE + 1, page_no * PAGE_SIZE, embedder)
        more = len(hits) > PAGE_SIZE
        shown = hits[:PAGE_SIZE]
        log.write(user(request), "search", request, **asked.logged(), page=page_no, hits=len(shown), more=more)
        return JSONResponse({"hits": [hit_json(h, media_of(h.sha256) is not None) for h in shown], "page": page_no,
                             "more": more, "truncated": hits.truncated})

    def export(request: Request) -> Response:
        asked = SearchRequest.of(request)
        with lock:
            hits = asked.run(index, EXPORT_LIMIT, embedder=embedder)
        log.write(user(request), "export", request, **asked.logged(), hits=len(hits))
        base = f"{request.url.scheme}://{request.headers.get('host', '')}"
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        for h in hits:
            writer.writerow([h.file, f"{h.start:.3f}", f"{h.end:.3f}", h.speaker or "", h.text, moment_link(base, h)])
        return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": 'attachment; filename="redact-search.csv"'})

    def play(request: Request) -> Response:
        """Where and from when the page plays a hit; the play is logged here, once, not per Range request."""
        sha256 = request.query_params.get("media", "")
        try:
            at = float(request.query_params.get("t", ""))
        except ValueError:
            return PlainTextResponse("t must be a time in seconds", 400)
        path = media_of(sha256) if len(sha256) == 64 else None
        if path is None:
            return PlainTextResponse("no redacted video for this hit", 404)
        log.write(user(request), "play", request, file=str(path), sha256=sha256, t=round(at, 3))
        return JSONResponse({"url": f"/media/{sha256}", "start": round(max(0.0, at - LEAD_IN), 3), "at": at,
                             "name": path.name})

    def media(request: Request) -> Response:
        path = media_of(request.path_params["sha256"])
        if path is None:
            return PlainTextResponse("not found", 404)
        return FileResponse(path, media_type="video/mp4")  # answers Range requests (seeking)

    routes = [
        Route("/", page),
        Route("/static/{name}", static),
        Route("/api/info", info),
        Route("/api/search", search),
        Route("/api/export.csv", export),
        Route("/api/play", play),
        Route("/media/{sha256}", media),
    ]
    app = Starlette(routes=routes, exception_handlers=ERROR_HANDLERS)
    app.add_middleware(Guard, token=token, hosts=hosts, user_header=user_header)
    app.state.token = token
    app.state.index = index
    return app


def serve(source, *, host: str = "127.0.0.1", port: int = 0, user_header: str | None = None,
          access_log: Path | None = None, meaning: bool = False, announce=print) -> None:
    """Serve the search page until interrupted; `announce` gets the URL (with the token, unless user_header)."""
    from redact.review.server import serve_app

    index = open_source(source, meaning=meaning)
    log_path = access_log or default_log()

    def build(hosts: set[str]) -> Starlette:
        return create_app(index, access_log=log_path, hosts=hosts, user_header=user_header)

    def shown(app: Starlette, base: str) -> None:
        announce(base + "/" if user_header else f"{base}/?token={app.state.token}")

    try:
        serve_app(build, host=host, port=port, announce=shown)
    finally:
        index.close()
