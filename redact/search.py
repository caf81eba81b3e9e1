"""Transcript search: index transcripts, find file + time (to the word) + snippet for a query.

    index = open_index(None)                        # index.sqlite in the state home (SQLite FTS5, embedded default)
    index = open_index("cases.sqlite")              # another SQLite file
    index = open_index("postgresql://u@host/db")    # shared PostgreSQL (tsvector + GIN), needs psycopg 3
    index.add(transcript, media_path="/out/a.redacted.mp4", sha256="…", tags=["case-17"])
    for hit in index.search('"green backpack" -blue', limit=20, file_glob="*/2024-*", tag="case-17"):
        print(hit.file, hit.start, hit.snippet)

Query syntax (the same on both back ends; see QUERY_SYNTAX): words (all must occur), "a phrase", prefix*
(at least 2 letters; "a phrase"* makes its last word a prefix), OR between two items (binds tighter than the
implicit AND: `knife OR gun car` means (knife OR gun) AND car; only upper-case OR is an operator), -word or
-"phrase" to exclude. Matching ignores case, diacritics and punctuation and does no stemming (`backpack` does not
find `backpacks`; `backpack*` does). Anything else (unbalanced quotes, a bare or inner `*`, AND/NOT, parentheses,
a dangling OR or -, a query of exclusions only) is a QueryError (a UserError) with one line. The parsed query is
translated, every token quoted, to an FTS5 expression or a tsquery literal: no user text reaches either syntax.

What is indexed: each transcript segment, as text rebuilt from its words. A word whose `redacted` is set (or whose
text is a "[REDACTED…]" placeholder) is never indexed: it is stored as the character █, which no query can match
and which keeps phrase positions, so a phrase never matches across a redaction. If a segment's text holds more
"[REDACTED…]" markers than its words have redacted words, the words are not trusted: the segment is indexed from
its text (markers -> █) without word times. (The `redactions` spans are not used: the audio stage pads them to
quiet points, so they cover neighbouring words that the published transcript keeps.)
"[REDACTED: X]" markers in segment text are stripped from the searchable text
(they become █ too); `Hit.text` shows them (the segment text rebuilt with one marker per redacted run), and
snippets show █ where words were redacted. Word times are stored per segment (int32 ms), so a hit's start/end are
those of the first matching word (or phrase) in the segment, not the segment's.

Ranking: BM25 (SQLite FTS5) or ts_rank (PostgreSQL) over at most `rank_window` (RANK_WINDOW) matching segments:
on SQLite the most recently indexed ones, on PostgreSQL the first the GIN index scan yields (table order);
Hits.truncated says when more matched. Snippets and word times are computed here,
for the returned hits only, identically on both back ends.
"""

from __future__ import annotations

import array
import hashlib
import json
import os
import re
import sqlite3
import sys
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from redact.errors import UserError

if TYPE_CHECKING:
    from redact.meaning import Embedder, Nearest

__all__ = ["Hit", "Hits", "Index", "Query", "QUERY_SYNTAX", "QueryError", "RANK_WINDOW", "open_index", "parse_query"]

QUERY_SYNTAX = (
    'Query syntax: words (all must occur), "exact phrase", prefix* (2+ letters), a OR b, -word / -"phrase" to '
    "exclude. OR binds tighter than the implied AND. Case, accents and punctuation are ignored; no stemming."
)
REDACTED = "█"  # stands for one redacted word in the searchable text; never produced by the query tokenizer
HIGHLIGHT = ("[", "]")  # around matched words in snippets, on both back ends
ELLIPSIS = "…"
SNIPPET_WORDS = 16
MAX_QUERY_CHARS = 1000
MAX_CLAUSES = 32
MIN_PREFIX = 2
RANK_WINDOW = 2_000  # rank at most this many matching segments (see Index.search)

_MARKER = re.compile(r"\[\s*REDACTED\b[^\]]*\]", re.IGNORECASE)
_TOKEN = re.compile(r"[^\W_]+")
_WORD_TOKEN = re.compile(rf"[^\W_]+|{REDACTED}")
_CORE = re.compile(r"^([\W_]*)(.*?[^\W_])([\W_]*)$", re.DOTALL)


class QueryError(UserError):
    """A malformed search query: the message says what is wrong in one line."""


class Hit(NamedTuple):
    file: str  # the media_path given to Index.add
    start: float  # seconds: the first matching word (phrase) in the segment, or the segment start
    end: float  # seconds: the end of that word (phrase), or the segment end
    text: str  # the whole segment, with "[REDACTED: X]" where words were redacted
    snippet: str  # a window around the match, matched words in [brackets], █ for redacted words
    score: float  # higher is better; BM25 on SQLite, ts_rank on PostgreSQL (not comparable across back ends)
    sha256: str  # of the media file
    tags: tuple[str, ...]
    speaker: str | None = None  # who says it ("S1", or a reviewer's name for the voice), when the transcript says
    track: int | None = None  # the audio track (1, 2, ...) it was said on, when the transcript says
    recorded: str | None = None  # when the file was recorded (ISO 8601), when known
    by: str = "words"  # "words" (the query's words match), or "meaning" (found by meaning alone: no highlight)


class Hits(list):
    """The list Index.search returns; `truncated` is True when more segments matched than the rank window, so only
    `rank_window` of them were ranked (see Index.search; narrow the query, or pass rank_window=None)."""

    truncated: bool = False


# ---------------------------------------------------------------------------------------------------- query


@dataclass(frozen=True)
class Clause:
    """A word or phrase: consecutive tokens; with `prefix`, the last token matches any word it starts."""

    tokens: tuple[str, ...]
    prefix: bool = False


@dataclass(frozen=True)
class Query:
    """AND over `groups`, each an OR over clauses; none of `exclude` may match."""

    groups: tuple[tuple[Clause, ...], ...]
    exclude: tuple[Clause, ...] = ()

    @property
    def clauses(self) -> tuple[Clause, ...]:
        return tuple(c for g in self.groups for c in g)

    def fts5(self) -> str:
        """The query as an FTS5 expression: every token is quoted, so no user text reaches FTS5 syntax."""

        def clause(c: Clause) -> str:
            return '"' + " ".join(c.tokens) + '"' + (" *" if c.prefix else "")

        positive = " AND ".join("(" + " OR ".join(clause(c) for c in g) + ")" for g in self.groups)
        if not self.exclude:
            return positive
        return f"({positive}) NOT (" + " OR ".join(clause(c) for c in self.exclude) + ")"

    def tsquery(self) -> str:
        """The query as a PostgreSQL tsquery literal (cast with ::tsquery, so PostgreSQL's parser never re-splits our
        tokens; they are letters and digits only, so quoting is safe), folded like the indexed tsvector."""

        def clause(c: Clause) -> str:
            toks = [f"'{fold(t)}'" for t in c.tokens]
            if c.prefix:
                toks[-1] += ":*"
            return "(" + " <-> ".join(toks) + ")"

        parts = ["(" + " | ".join(clause(c) for c in g) + ")" for g in self.groups]
        parts += ["!" + clause(c) for c in self.exclude]
        return " & ".join(parts)


def parse_query(text: str) -> Query:
    """Parse the query syntax (QUERY_SYNTAX); raise QueryError with one line for anything malformed."""
    if not isinstance(text, str) or not text.strip():
        raise QueryError("empty search query")
    if len(text) > MAX_QUERY_CHARS:
        raise QueryError(f"search query longer than {MAX_QUERY_CHARS} characters")
    items: list[tuple[str, Clause | None]] = []  # ("or", None) | ("pos"/"neg", clause) | ("skip", None)
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        negate = False
        if ch == "-":
            if i + 1 >= n or text[i + 1].isspace():
                raise QueryError("'-' must be followed by a word or phrase to exclude, e.g. -blue")
            if text[i + 1] == "-":
                raise QueryError("'--' in query: use a single '-' before a word or phrase to exclude it")
            negate, i = True, i + 1
            ch = text[i]
        if ch in "()":
            raise QueryError(f"parentheses are not supported in queries ({QUERY_SYNTAX})")
        if ch == '"':
            close = text.find('"', i + 1)
            if close < 0:
                raise QueryError('unbalanced double quote in query: close the phrase with "')
            inner, i = text[i + 1 : close], close + 1
            prefix = i < n and text[i] == "*"
            if prefix:
                i += 1
            tokens = query_tokens(inner)
            if not tokens:
                raise QueryError(f'the phrase "{inner}" has no words in it')
            if prefix and len(tokens[-1]) < MIN_PREFIX:
                raise QueryError(f"prefix search needs at least {MIN_PREFIX} letters before '*'")
            items.append(("neg" if negate else "pos", Clause(tuple(tokens), prefix)))
            continue
        j = i
        while j < n and not text[j].isspace() and text[j] not in '"()':
            j += 1
        word, i = text[i:j], j
        if word in ("AND", "NOT", "OR") and negate:
            raise QueryError(f"'-{word}': an operator cannot be excluded")
        if word == "OR":
            items.append(("or", None))
            continue
        if word in ("AND", "NOT"):
            raise QueryError(f"'{word}' is not an operator here: words are ANDed by default, use -word to exclude")
        prefix = word.endswith("*")
        stem = word[:-1] if prefix else word
        if "*" in stem or (prefix and not stem):
            raise QueryError("'*' marks a prefix and must end a word, e.g. back*")
        tokens = query_tokens(stem)
        if not tokens:
            if prefix or negate:
                raise QueryError(f"'{word}' has no letters or digits to search for")
            items.append(("skip", None))  # punctuation only: ignored, as in web search syntax
            continue
        if prefix and len(tokens[-1]) < MIN_PREFIX:
            raise QueryError(f"prefix search needs at least {MIN_PREFIX} letters before '*'")
        items.append(("neg" if negate else "pos", Clause(tuple(tokens), prefix)))

    groups: list[list[Clause]] = []
    exclude: list[Clause] = []
    prev = None
    for kind, clause in items:
        if kind == "skip":
            continue
        if kind == "or":
            if prev != "pos":
                raise QueryError("OR needs a word or phrase on each side (and cannot join an -exclusion)")
        elif kind == "neg":
            if prev == "or":
                raise QueryError("OR cannot join an -exclusion")
            exclude.append(clause)
        elif prev == "or":
            groups[-1].append(clause)
        else:
            groups.append([clause])
        prev = kind
    if prev == "or":
        raise QueryError("OR needs a word or phrase on each side")
    if not groups:
        raise QueryError("the query has no words to search for" + (" (only exclusions)" if exclude else ""))
    if sum(len(g) for g in groups) + len(exclude) > MAX_CLAUSES:
        raise QueryError(f"too many words or phrases in the query (at most {MAX_CLAUSES})")
    return Query(tuple(tuple(g) for g in groups), tuple(exclude))


def query_tokens(text: str) -> list[str]:
    """Lower-cased runs of letters and digits (diacritics kept: FTS5 folds them itself; `fold` for the rest)."""
    return _TOKEN.findall(unicodedata.normalize("NFC", text).lower())


def fold(token: str) -> str:
    """Remove diacritics (Café -> cafe) the way FTS5's remove_diacritics does, for PostgreSQL and word matching."""
    if token.isascii():
        return token
    decomposed = unicodedata.normalize("NFD", token)
    return unicodedata.normalize("NFC", "".join(c for c in decomposed if unicodedata.category(c) != "Mn"))


def _word_tokens(word: str) -> list[str]:
    if word.isascii():
        return _WORD_TOKEN.findall(word.lower())
    return [fold(t) for t in _WORD_TOKEN.findall(unicodedata.normalize("NFC", word).lower())]


# ------------------------------------------------------------------------------------------ transcript rows


@dataclass
class _Segment:
    start: float
    end: float
    body: str  # searchable: words joined by single spaces, █ per redacted word, internal spaces as U+00A0
    text: str | None  # display text when it differs from body (it does when something was redacted)
    words: bytes | None  # int32 start ms x n, then int32 end ms x n, one per word of body.split(" ")
    speaker: str | None = None
    track: int | None = None


def _pack_times(starts: Sequence[float], ends: Sequence[float]) -> bytes:
    def ms(values: Sequence[float]) -> array.array:
        return array.array("i", (max(0, min(2**31 - 1, round(v * 1000))) for v in values))

    a, b = ms(starts), ms(ends)
    if sys.byteorder == "big":
        a.byteswap()
        b.byteswap()
    return a.tobytes() + b.tobytes()


def _unpack_times(blob: bytes | None) -> tuple[list[float], list[float]]:
    if not blob:
        return [], []
    a = array.array("i")
    a.frombytes(bytes(blob))
    if sys.byteorder == "big":
        a.byteswap()
    n = len(a) // 2
    return [v / 1000 for v in a[:n]], [v / 1000 for v in a[n:]]


def _number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UserError(f"transcript: {what} is not a number: {value!r}")
    return float(value)


def _segments_from(transcript: dict) -> list[_Segment]:
    if not isinstance(transcript, dict) or not isinstance(transcript.get("segments"), list):
        raise UserError("transcript: not a transcript (no 'segments' list)")
    out = []
    for k, seg in enumerate(transcript["segments"]):
        if not isinstance(seg, dict):
            raise UserError(f"transcript: segment {k} is not an object")
        start, end = _number(seg.get("start"), f"segment {k} start"), _number(seg.get("end"), f"segment {k} end")
        seg_text = seg.get("text") or ""
        words = seg.get("words") or []
        if words:
            body_words, display, starts, ends, timed, n_redacted = [], [], [], [], True, 0
            run = None  # category of the redacted run being shown in display
            for w in words:
                if not isinstance(w, dict):
                    raise UserError(f"transcript: segment {k} has a word that is not an object")
                raw = " ".join(str(w.get("word") or "").split())
                ws, we = w.get("start"), w.get("end")
                has_times = isinstance(ws, int | float) and isinstance(we, int | float)
                redacted = w.get("redacted")
                if not redacted and _MARKER.search(raw):
                    redacted = _MARKER.search(raw).group(0)[1:-1].split(":", 1)[-1].strip() or "REDACTED"
                if redacted:
                    n_redacted += 1
                    body_words.append(REDACTED)
                    category = str(redacted).upper() if isinstance(redacted, str) else "REDACTED"
                    if run != category:
                        display.append(f"[REDACTED: {category}]" if category != "REDACTED" else "[REDACTED]")
                        run = category
                elif raw:
                    body_words.append(raw.replace(" ", "\u00a0"))
                    display.append(raw)
                    run = None
                else:
                    continue  # an empty word: nothing to index or time
                if has_times:
                    starts.append(float(ws))
                    ends.append(float(we))
                else:
                    timed = False
            body = " ".join(body_words)
            text = " ".join(display)
            blob = _pack_times(starts, ends) if timed and body_words else None
        if words and len(_MARKER.findall(seg_text)) > n_redacted:
            # The text redacts more than the words say: trust the text (safe), give up word times for this segment.
            words = None
        if not words:
            text = " ".join(seg_text.split())
            body = " ".join(_MARKER.sub(f" {REDACTED} ", text).split())
            blob = None
        if not body:
            continue
        speaker = seg.get("speaker") if isinstance(seg.get("speaker"), str) and seg.get("speaker") else None
        track = next((t for t in (seg.get("track"), transcript.get("track")) if isinstance(t, int)
                      and not isinstance(t, bool) and t > 0), None)
        out.append(_Segment(start, end, body, None if text == body else text, blob, speaker, track))
    return out


def _spans(words: list[str], query: Query) -> list[tuple[int, int]]:
    """(first, last) word indices of every place a positive clause of the query matches, in order."""
    flat: list[tuple[str, int]] = [(tok, wi) for wi, w in enumerate(words) for tok in _word_tokens(w)]
    found = set()
    for clause in query.clauses:
        toks = [fold(t) for t in clause.tokens]
        m = len(toks)
        for p in range(len(flat) - m + 1):
            last = flat[p + m - 1][0]
            if all(flat[p + k][0] == toks[k] for k in range(m - 1)) and (
                last.startswith(toks[-1]) if clause.prefix else last == toks[-1]
            ):
                found.add((flat[p][1], flat[p + m - 1][1]))
    return sorted(found)


def _locate(
    body: str, blob: bytes | None, seg_start: float, seg_end: float, query: Query, width: int = SNIPPET_WORDS
) -> tuple[float, float, str]:
    """(start, end, snippet): the times of the first matching word (phrase) in the segment, or the segment's when
    no word times were stored; the snippet is `width` words around it with the matched words in HIGHLIGHT.

    Computed here rather than by FTS5 snippet()/ts_headline so that both back ends give the same snippets (and
    because FTS5 rebuilds a prefix query's doclists for every snippet() cursor: ~80 ms for wood* at 1M segments).
    """
    words = body.split(" ")
    spans = _spans(words, query)
    start, end = seg_start, seg_end
    starts, ends = _unpack_times(blob)
    if spans and len(starts) == len(words):
        start, end = starts[spans[0][0]], ends[spans[0][1]]
    return start, end, _window(words, spans, width)


def _window(words: list[str], spans: list[tuple[int, int]], width: int = SNIPPET_WORDS) -> str:
    """`width` words around the first span, the spans' words in HIGHLIGHT (the start of the segment if none)."""
    marked = [False] * len(words)
    for a, b in spans:
        for k in range(a, b + 1):
            marked[k] = True
    first = spans[0][0] if spans else 0
    lo = max(0, min(first - width // 4, len(words) - width))
    hi = min(len(words), lo + width)
    parts: list[str] = []
    for k in range(lo, hi):
        w = words[k].replace("\u00a0", " ")
        if marked[k]:  # brackets go around the letters, not the punctuation: "[Printing]," not "[Printing,]"
            core = _CORE.match(w)
            head, mid, tail = core.groups() if core else ("", w, "")
            if k == lo or not marked[k - 1]:
                head += HIGHLIGHT[0]
            if k == hi - 1 or not marked[k + 1]:
                tail = HIGHLIGHT[1] + tail
            w = head + mid + tail
        parts.append(w)
    return (ELLIPSIS if lo > 0 else "") + " ".join(parts) + (ELLIPSIS if hi < len(words) else "")


def _clean_tags(tags: Sequence[str]) -> list[str]:
    if isinstance(tags, str):
        raise TypeError("tags must be a sequence of strings, not a string")
    out = []
    for t in tags:
        t = str(t).strip()
        if t and t not in out:
            out.append(t)
    return out


def _glob_regex(glob: str) -> str:
    """A shell glob (*, ?, [abc], [!abc]) as an anchored POSIX regular expression for PostgreSQL's ~."""
    out, i, n = ["^"], 0, len(glob)
    while i < n:
        c = glob[i]
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[":
            j = i + 1
            if j < n and glob[j] in "!^":
                j += 1
            if j < n and glob[j] == "]":
                j += 1
            j = glob.find("]", j)
            if j < 0:
                out.append("\\[")
            else:
                inner = glob[i + 1 : j]
                neg = inner[:1] in ("!", "^")
                inner = inner[1:] if neg else inner
                out.append("[" + ("^" if neg else "") + inner.replace("\\", "\\\\") + "]")
                i = j
        elif c.isalnum() or c == "_" or ord(c) > 127:
            out.append(c)
        else:
            out.append("\\" + c)
        i += 1
    out.append("$")
    return "".join(out)


def _sqlite_glob(glob: str) -> str:
    return re.sub(r"\[!", "[^", glob)


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class Filters:
    """What a search is narrowed to, checked once (`of`) for both back ends."""

    file_glob: str | None = None
    tag: str | None = None
    speaker: str | None = None
    track: int | None = None
    since: str | None = None  # YYYY-MM-DD, inclusive, on the file's recording date
    until: str | None = None

    @classmethod
    def of(cls, **given) -> Filters:
        """Empty strings mean no filter; a malformed date or track is a UserError."""
        values = {k: (v if v not in ("", None) else None) for k, v in given.items()}
        track = values.get("track")
        if track is not None and (isinstance(track, bool) or not isinstance(track, int) or track < 1):
            raise UserError(f"search: the audio track must be a number from 1, not {track!r}")
        for name in ("since", "until"):
            if values.get(name) is not None and not _DATE.match(str(values[name])):
                raise UserError(f"search: {name} must be a date as YYYY-MM-DD, not {values[name]!r}")
        return cls(**values)

    @property
    def by_file(self) -> bool:
        """Whether the filters narrow the files (resolved to file ids first: the files table is small)."""
        return self.file_glob is not None or self.since is not None or self.until is not None


# ------------------------------------------------------------------------------------------------- indexes


class Index:
    """A transcript index. Use open_index() to get one; use as a context manager or call close()."""

    spec: str

    def add(
        self,
        transcript: dict,
        *,
        media_path: str,
        sha256: str,
        recorded: str | None = None,
        tags: Sequence[str] = (),
    ) -> int:
        """Index one transcript (the audio stage's JSON, as a dict) for the media file at `media_path`.

        Rows of any file indexed before with the same media_path or the same sha256 are replaced, in the same
        transaction; tags are replaced too. Returns the number of segments indexed.
        """
        if not media_path or not isinstance(media_path, str | os.PathLike):
            raise UserError("index: media_path is required")
        if not sha256 or not isinstance(sha256, str):
            raise UserError("index: sha256 of the media file is required")
        media_path = os.fspath(media_path)
        rows = _segments_from(transcript)
        model = transcript.get("model") if isinstance(transcript.get("model"), dict) else {}
        meta = {
            "media_path": media_path,
            "name": os.path.basename(media_path),
            "sha256": sha256.lower(),
            "recorded": recorded,
            "duration": transcript.get("duration") if isinstance(transcript.get("duration"), int | float) else None,
            "language": transcript.get("language"),
            "model": model.get("id"),
            "indexed_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        self._replace(meta, _clean_tags(tags), rows)
        return len(rows)

    def search(
        self,
        query: str,
        *,
        limit: int = 20,
        file_glob: str | None = None,
        tag: str | None = None,
        rank_window: int | None = RANK_WINDOW,
        speaker: str | None = None,
        track: int | None = None,
        since: str | None = None,
        until: str | None = None,
        offset: int = 0,
        meaning: Embedder | None = None,
    ) -> Hits:
        """Best `limit` segments for `query` (QUERY_SYNTAX), best first, after the first `offset` (paging);
        `file_glob` matches the media path or its file name (shell glob, case-sensitive), `tag` keeps files indexed
        with that tag, `speaker` segments said by that speaker (the transcript's label, exactly: "S2", "Officer
        Diaz"), `track` those said on that audio track (1, 2, ...), `since`/`until` (YYYY-MM-DD, inclusive) files
        recorded in that range (a file with no recording date is left out when either is given).

        With `meaning` (a redact.meaning.Embedder; the index must have been embedded with the same model, see
        `embed`) the hits are the query's word matches, ranked by reciprocal rank fusion of their word rank and
        their meaning rank, then the segments nearest in meaning that the words do not match (hit.by "meaning"),
        so a hit the words find is never pushed off the list by one they do not.

        Ranking (BM25 / ts_rank) costs 2-5 µs per matching segment, so a query that matches a large share of a
        big index (a word like "the") would take seconds: only `rank_window` matches are ranked (hits.truncated
        tells): on SQLite the most recently indexed, on PostgreSQL the first its index scan yields. BM25's term
        statistics still come from the whole index. rank_window=None ranks every match.
        """
        q = parse_query(query)
        for name, value in (("limit", limit), ("offset", offset + 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserError(f"search: {name} must be a {'positive' if name == 'limit' else 'non-negative'} integer")
        if rank_window is not None and (isinstance(rank_window, bool) or not isinstance(rank_window, int)
                                        or rank_window < 1):
            raise UserError("search: rank_window must be None or a positive integer")
        filters = Filters.of(file_glob=file_glob, tag=tag, speaker=speaker, track=track, since=since, until=until)
        window = None if rank_window is None else max(rank_window, limit + offset)
        if meaning is None:
            rows, truncated = self._search(q, limit + offset, filters, window)
            return self._hits(rows[offset:], q, truncated)
        rows, truncated, by_meaning = self._hybrid(q, limit + offset, filters, window, meaning)
        return self._hits(rows[offset:], q, truncated, by_meaning)

    @staticmethod
    def _hits(rows: Iterable[tuple], q: Query, truncated: bool, by_meaning: frozenset[int] = frozenset()) -> Hits:
        """Hits from back-end rows (segment id, file, sha, start, end, body, text, words, score, tags, speaker,
        track, recorded); a segment found by meaning alone is a hit on the whole segment, nothing highlighted."""
        hits = Hits()
        hits.truncated = truncated
        for seg_id, file, sha, seg_start, seg_end, body, text, blob, score, tags, said_by, track, recorded in rows:
            if seg_id in by_meaning:
                start, end, snippet = seg_start, seg_end, _window(body.split(" "), [])
            else:
                start, end, snippet = _locate(body, blob, seg_start, seg_end, q)
            text = (text if text is not None else body).replace("\u00a0", " ")
            hits.append(Hit(file, start, end, text, snippet, score, sha, tuple(tags), said_by, track, recorded,
                            "meaning" if seg_id in by_meaning else "words"))
        return hits

    # ------------------------------------------------------------------------------------------ meaning
    MEANING_DEPTH = 100  # word and meaning ranks fused (at least; more when a page further down is asked for)

    def _hybrid(self, q: Query, n: int, filters: Filters, window: int | None, embedder: Embedder
                ) -> tuple[list[tuple], bool, frozenset[int]]:
        """The first n rows of: word matches by RRF of word and meaning rank, then meaning-only segments."""
        from redact.meaning import rrf

        depth = max(n, self.MEANING_DEPTH)
        word_rows, truncated = self._search(q, depth, filters, window)
        nearest = self.nearest(embedder)
        text = " ".join(" ".join(c.tokens) for c in q.clauses)
        vector = embedder.encode([text])[0]
        ranges = self._file_ranges(filters) if filters.by_file or filters.tag is not None else None
        k = 4 * depth
        while True:  # the other filters and exclusions are checked on the nearest candidates: deeper until enough
            candidates = nearest.top(vector, k, ranges)
            meaning_ids = self._passing(candidates, filters, q.exclude)
            if len(meaning_ids) >= depth or len(candidates) < k:
                break
            k *= 8
        meaning_ids = meaning_ids[:depth]
        word_ids = [r[0] for r in word_rows]
        fused = rrf(word_ids, meaning_ids)
        words_found = set(word_ids)
        order = sorted(word_ids, key=lambda i: -fused[i]) + [i for i in meaning_ids if i not in words_found]
        order = order[:n]
        by_id = {r[0]: r for r in word_rows}
        extra = {r[0]: r for r in self._rows({i: fused[i] for i in order if i not in by_id})}
        rows = []
        for i in order:
            row = by_id.get(i) or extra.get(i)
            if row is not None:
                rows.append((*row[:8], fused[i], *row[9:]))
        return rows, truncated, frozenset(extra)

    def _passing(self, ids: list[int], filters: Filters, exclude: tuple[Clause, ...]) -> list[int]:
        """`ids`, in order, less those the filters leave out or an -exclusion matches."""
        if not ids:
            return []
        kept = self._filter_ids(ids, filters) if filters != Filters() else set(ids)
        if exclude and kept:
            banned = Query(tuple((c,) for c in exclude))
            bodies = self._bodies(kept)
            kept = {i for i in kept if not _spans(bodies[i].split(" "), banned)}
        return [i for i in ids if i in kept]

    def embed(self, embedder: Embedder, *, batch: int = 4096, progress=None) -> int:
        """Give every segment without a vector one (all of them the first time); returns how many. The index
        records the model (id and weights' hash): embedding with another is a UserError (make a new index)."""
        self._vector_model(embedder, set_if_none=True)
        done, after = 0, 0
        while True:
            rows = self._unembedded(after, batch)
            if not rows:
                return done
            from redact.meaning import to_blob

            self._store_vectors([r[0] for r in rows], to_blob(embedder.encode([r[1] for r in rows])))
            done, after = done + len(rows), rows[-1][0]
            if progress is not None:
                progress(done)

    def vector_model(self) -> tuple[str, str] | None:
        """(embedder id, weights' SHA-256) the index's vectors were made with, or None when it has none."""
        raise NotImplementedError

    def nearest(self, embedder: Embedder) -> Nearest:
        """Every vector of the index in memory (loaded once, again when segments were added or removed)."""
        from redact.meaning import Nearest, from_blobs

        self._vector_model(embedder, set_if_none=False)
        mark = self._vector_mark()
        cached = getattr(self, "_nearest_cache", None)
        if cached is None or cached[0] != mark:
            ids, blobs = self._all_vectors()
            self._nearest_cache = (mark, Nearest(np.asarray(ids, np.int64), from_blobs(blobs)))
        return self._nearest_cache[1]

    def _vector_model(self, embedder: Embedder, *, set_if_none: bool) -> None:
        have = self.vector_model()
        if have is None and set_if_none:
            self._set_vector_model(embedder.id, embedder.sha256)
            return
        if have is None:
            raise UserError("this index has no meaning vectors: run `redact index --meaning` (or `redact embed`) first")
        if have != (embedder.id, embedder.sha256):
            raise UserError(f"this index's vectors were made by {have[0]} ({have[1][:12]}…), not {embedder.id} "
                            f"({embedder.sha256[:12]}…): index into a new index to change models")

    def media(self, sha256: str) -> str | None:
        """The media path indexed with this SHA-256, if any (the search page finds a hit's video by its hash, so
        that no path from a request is ever opened)."""
        raise NotImplementedError

    def speakers(self) -> list[str]:
        """Every speaker label in the index, sorted (for the search page's filter)."""
        raise NotImplementedError

    def remove(self, media_path: str) -> bool:
        """Drop a file's rows; True if it was indexed."""
        raise NotImplementedError

    def count(self) -> tuple[int, int]:
        """(files, segments) in the index."""
        raise NotImplementedError

    def optimize(self) -> None:
        """Compact the index after a large load (merges FTS5 segments / VACUUM ANALYZE); searches get faster."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.spec}>"

    # back-end hooks
    def _replace(self, meta: dict, tags: list[str], rows: list[_Segment]) -> None:
        raise NotImplementedError

    def _search(self, q: Query, limit: int, filters: Filters, window: int | None) -> tuple[list[tuple], bool]:
        raise NotImplementedError

    def _rows(self, scores: dict[int, float]) -> list[tuple]:
        raise NotImplementedError

    def _filter_ids(self, ids: list[int], filters: Filters) -> set[int]:
        raise NotImplementedError

    def _file_ranges(self, filters: Filters) -> list[tuple[int, int]]:
        """(first, last) segment ids of each file the file-level filters (glob, tag, dates) keep."""
        raise NotImplementedError

    def _bodies(self, ids: Iterable[int]) -> dict[int, str]:
        raise NotImplementedError

    def _set_vector_model(self, model: str, sha256: str) -> None:
        raise NotImplementedError

    def _unembedded(self, after: int, limit: int) -> list[tuple[int, str]]:
        raise NotImplementedError

    def _store_vectors(self, ids: list[int], blobs: list[bytes]) -> None:
        raise NotImplementedError

    def _vector_mark(self) -> tuple:
        raise NotImplementedError

    def _all_vectors(self) -> tuple[list[int], list[bytes]]:
        raise NotImplementedError


_SQLITE_VERSION = 3  # PRAGMA user_version of the schema below (1: no speakers, 2: no tracks; opened, they gain them)
_SQLITE_UPGRADES = {1: "ALTER TABLE segments ADD COLUMN speaker TEXT", 2: "ALTER TABLE segments ADD COLUMN track INTEGER"}
_SQLITE_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS files(
    id INTEGER PRIMARY KEY, media_path TEXT NOT NULL UNIQUE, name TEXT NOT NULL, sha256 TEXT NOT NULL,
    recorded TEXT, duration REAL, language TEXT, model TEXT, indexed_at TEXT NOT NULL,
    seg_lo INTEGER, seg_hi INTEGER);
CREATE INDEX IF NOT EXISTS files_sha256 ON files(sha256);
CREATE TABLE IF NOT EXISTS tags(
    file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE, tag TEXT NOT NULL,
    PRIMARY KEY(file_id, tag)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tags_tag ON tags(tag);
CREATE TABLE IF NOT EXISTS segments(
    id INTEGER PRIMARY KEY, file_id INTEGER NOT NULL, start_s REAL NOT NULL, end_s REAL NOT NULL,
    body TEXT NOT NULL, text TEXT, words BLOB, meta TEXT NOT NULL, speaker TEXT, track INTEGER);
CREATE INDEX IF NOT EXISTS segments_file ON segments(file_id);
CREATE VIRTUAL TABLE IF NOT EXISTS segments_fts USING fts5(
    body, meta, content='segments', content_rowid='id',
    tokenize="unicode61 remove_diacritics 2 tokenchars '{REDACTED}'", prefix='2 3');
PRAGMA user_version = {_SQLITE_VERSION};
"""
_MAX_OR_FILES = 32


def _meta(file_tokens: str, segment: _Segment) -> str:
    """A segment's `meta` column: its file's tokens, then its speaker's (s<hash>) and its audio track's (a<n>)."""
    return " ".join([file_tokens, *([_tag_token(segment.speaker, "s")] if segment.speaker else []),
                     *([f"a{segment.track}"] if segment.track else [])])


def _tag_token(tag: str, kind: str = "t") -> str:
    """The FTS5 token for a tag (kind "t") or a speaker ("s") in the `meta` column (letters and digits only,
    whatever the name holds)."""
    return kind + hashlib.sha1(tag.encode()).hexdigest()[:16]


class _SqliteIndex(Index):
    """SQLite FTS5. Each segment's `meta` column holds tokens for its file (f<id>), tags (t<hash>) and speaker
    (s<hash>): --file, --tag and --speaker become FTS5 terms intersected with the query's doclists, rather than a
    join per matching row."""

    def __init__(self, path: Path, *, create: bool):
        self.spec = str(path)
        if not create and not path.exists():
            raise UserError(f"no transcript index at {path}: index transcripts first (redact index …)")
        if not path.parent.is_dir():
            raise UserError(f"index folder does not exist: {path.parent}")
        try:
            self._db = sqlite3.connect(path, isolation_level=None, timeout=60, check_same_thread=False)
            self._db.execute("PRAGMA busy_timeout = 60000")
            mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            self._db.execute("PRAGMA synchronous = NORMAL" if mode == "wal" else "PRAGMA synchronous = FULL")
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.execute("PRAGMA mmap_size = 1073741824")
            if not self._db.execute("SELECT 1 FROM sqlite_master WHERE name = 'segments_fts'").fetchone():
                if not create:
                    raise UserError(f"{path} is not a transcript index")
                self._db.execute("BEGIN IMMEDIATE")
                for statement in _SQLITE_SCHEMA.split(";"):  # IF NOT EXISTS: a concurrent creator is harmless
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute("COMMIT")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version in _SQLITE_UPGRADES:  # made before speaker labels / tracks: its segments have none
                self._db.execute("BEGIN IMMEDIATE")
                version = self._db.execute("PRAGMA user_version").fetchone()[0]
                for step in range(version, _SQLITE_VERSION):
                    self._db.execute(_SQLITE_UPGRADES[step])
                self._db.execute(f"PRAGMA user_version = {_SQLITE_VERSION}")
                self._db.execute("COMMIT")
                version = _SQLITE_VERSION
            if version != _SQLITE_VERSION:
                raise UserError(f"{path} was made by another version of redact (schema {version}, this one needs "
                                f"{_SQLITE_VERSION}): delete it and index the transcripts again")
        except sqlite3.DatabaseError as e:
            raise UserError(f"cannot open transcript index {path}: {e}") from None

    def _replace(self, meta: dict, tags: list[str], rows: list[_Segment]) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            old = db.execute(
                "SELECT id FROM files WHERE media_path = ? OR sha256 = ?", (meta["media_path"], meta["sha256"])
            ).fetchall()
            for (file_id,) in old:
                self._delete_file(file_id)
            file_id = db.execute(
                "INSERT INTO files(media_path, name, sha256, recorded, duration, language, model, indexed_at)"
                " VALUES(:media_path, :name, :sha256, :recorded, :duration, :language, :model, :indexed_at)",
                meta,
            ).lastrowid
            db.executemany("INSERT INTO tags(file_id, tag) VALUES(?, ?)", [(file_id, t) for t in tags])
            tokens = " ".join([f"f{file_id}", *(_tag_token(t) for t in tags)])
            db.executemany(
                "INSERT INTO segments(file_id, start_s, end_s, body, text, words, meta, speaker, track)"
                " VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(file_id, r.start, r.end, r.body, r.text, r.words, _meta(tokens, r), r.speaker, r.track) for r in rows],
            )
            db.execute(
                "INSERT INTO segments_fts(rowid, body, meta) SELECT id, body, meta FROM segments WHERE file_id = ?",
                (file_id,),
            )
            db.execute(  # the file's segment rowids (one range: writers are serialised), to bound filtered searches
                "UPDATE files SET (seg_lo, seg_hi) = (SELECT min(id), max(id) FROM segments WHERE file_id = ?1)"
                " WHERE id = ?1",
                (file_id,),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _delete_file(self, file_id: int) -> None:
        db = self._db
        if self.vector_model() is not None:  # before the segments: a new segment may reuse a deleted rowid
            db.execute("DELETE FROM vectors WHERE id IN (SELECT id FROM segments WHERE file_id = ?)", (file_id,))
        db.execute(
            "INSERT INTO segments_fts(segments_fts, rowid, body, meta) SELECT 'delete', id, body, meta FROM segments"
            " WHERE file_id = ?",
            (file_id,),
        )
        db.execute("DELETE FROM segments WHERE file_id = ?", (file_id,))
        db.execute("DELETE FROM files WHERE id = ?", (file_id,))  # tags go by ON DELETE CASCADE

    def remove(self, media_path: str) -> bool:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute("SELECT id FROM files WHERE media_path = ?", (os.fspath(media_path),)).fetchone()
            if row:
                self._delete_file(row[0])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return row is not None

    def count(self) -> tuple[int, int]:
        return (
            self._db.execute("SELECT count(*) FROM files").fetchone()[0],
            self._db.execute("SELECT count(*) FROM segments").fetchone()[0],
        )

    def optimize(self) -> None:
        self._db.execute("INSERT INTO segments_fts(segments_fts) VALUES('optimize')")
        self._db.execute("PRAGMA optimize")

    def close(self) -> None:
        self._db.close()

    def _filters(self, f: Filters) -> tuple[str, list[int] | None, tuple[int, int] | None] | None:
        """For the filters: (FTS5 terms on the meta column, file ids to join on or None, (lo, hi) bounds on the
        segment rowids or None); None when no file can match.

        Files narrowed by glob or recording date matching up to _MAX_OR_FILES files become an OR of their f<id>
        tokens (FTS5 intersects doclists); more are checked per matching row by a join (an FTS5 OR of hundreds of
        terms is slower). Either way the rowids are bounded by the matched files' segments, which FTS5 seeks to
        directly."""
        parts, join_ids, bounds = [], None, None
        if f.tag is not None:
            parts.append(f'meta : "{_tag_token(f.tag)}"')
        if f.speaker is not None:
            parts.append(f'meta : "{_tag_token(f.speaker, "s")}"')
        if f.track is not None:
            parts.append(f'meta : "a{f.track}"')
        if f.by_file:
            sql, params = "SELECT id, seg_lo, seg_hi FROM files WHERE seg_lo IS NOT NULL", []
            if f.file_glob is not None:
                sql += " AND (media_path GLOB ? OR name GLOB ?)"
                params += [_sqlite_glob(f.file_glob)] * 2
            if f.since is not None:
                sql += " AND substr(recorded, 1, 10) >= ?"
                params.append(f.since)
            if f.until is not None:
                sql += " AND substr(recorded, 1, 10) <= ?"
                params.append(f.until)
            rows = self._db.execute(sql, params).fetchall()
            if not rows:
                return None
            if len(rows) <= _MAX_OR_FILES:
                parts.append("meta : (" + " OR ".join(f'"f{r[0]}"' for r in rows) + ")")
            elif len(rows) < self._db.execute("SELECT count(*) FROM files").fetchone()[0]:
                join_ids = [r[0] for r in rows]
            bounds = (min(r[1] for r in rows), max(r[2] for r in rows))
        return " AND ".join(parts), join_ids, bounds

    def _search(self, q: Query, limit: int, filters: Filters, window: int | None) -> tuple[list[tuple], bool]:
        db = self._db
        found = self._filters(filters)
        if found is None:
            return [], False
        terms, join_ids, bounds = found
        match = f"body : ({q.fts5()})" + (f" AND {terms}" if terms else "")
        # bm25 (weight 0 for meta) is computed only for the rows the inner query yields: with a window, the newest
        # `window` matches (FTS5 walks its doclists in descending rowid order and stops there).
        inner = "SELECT segments_fts.rowid AS id, bm25(segments_fts, 1.0, 0.0) AS r FROM segments_fts"
        where = " WHERE segments_fts MATCH ?"
        params: list = [match]
        if bounds is not None:
            where += " AND segments_fts.rowid BETWEEN ? AND ?"
            params += bounds
        if join_ids is not None:
            inner += " JOIN segments s ON s.id = segments_fts.rowid"
            where += " AND s.file_id IN (SELECT value FROM json_each(?))"
            params.append(json.dumps(join_ids))
        if window is None:
            sql = f"SELECT id, r, 0 FROM ({inner}{where}) ORDER BY r, id DESC"
        else:
            sql = (
                f"SELECT id, r, count(*) OVER () FROM ({inner}{where} ORDER BY segments_fts.rowid DESC LIMIT ?)"
                " ORDER BY r, id DESC"
            )
            params.append(window + 1)  # one more, to tell whether the window cut anything
        try:
            ranked = db.execute(sql + " LIMIT ?", [*params, limit]).fetchall()
        except sqlite3.OperationalError as e:  # a query our translation should never produce: a bug, not the user
            raise RuntimeError(f"FTS5 rejected {match!r}: {e}") from e
        if not ranked:
            return [], False
        rows = self._rows({r[0]: -r[1] for r in ranked})
        return rows, window is not None and ranked[0][2] > window

    def _rows(self, scores: dict[int, float]) -> list[tuple]:
        """The rows Index._hits takes, for segment ids -> score, in the dict's order."""
        db, ids = self._db, list(scores)
        info = {
            r[0]: r[1:]
            for r in db.execute(
                "SELECT s.id, f.media_path, f.sha256, s.start_s, s.end_s, s.body, s.text, s.words, s.speaker, s.track,"
                f" f.recorded, f.id FROM segments s JOIN files f ON f.id = s.file_id WHERE s.id IN ({','.join('?' * len(ids))})",
                ids,
            )
        }
        file_ids = sorted({v[-1] for v in info.values()})
        tags: dict[int, list[str]] = {}
        for fid, t in db.execute(
            f"SELECT file_id, tag FROM tags WHERE file_id IN ({','.join('?' * len(file_ids))}) ORDER BY tag", file_ids
        ):
            tags.setdefault(fid, []).append(t)
        out = []
        for seg_id, score in scores.items():
            if seg_id not in info:  # deleted since it was ranked
                continue
            file, sha, start, end, body, text, blob, said_by, track, recorded, fid = info[seg_id]
            out.append((seg_id, file, sha, start, end, body, text, blob, score, tags.get(fid, []), said_by, track,
                        recorded))
        return out

    def _filter_ids(self, ids: list[int], f: Filters) -> set[int]:
        sql = ("SELECT s.id FROM segments s JOIN files fl ON fl.id = s.file_id"
               " WHERE s.id IN (SELECT value FROM json_each(?))")
        params: list = [json.dumps(ids)]
        for cond, value in (("(fl.media_path GLOB ? OR fl.name GLOB ?)", f.file_glob), ("s.speaker = ?", f.speaker),
                            ("s.track = ?", f.track), ("substr(fl.recorded, 1, 10) >= ?", f.since),
                            ("substr(fl.recorded, 1, 10) <= ?", f.until),
                            ("EXISTS (SELECT 1 FROM tags t WHERE t.file_id = fl.id AND t.tag = ?)", f.tag)):
            if value is not None:
                sql += " AND " + cond
                params += [_sqlite_glob(value)] * 2 if "GLOB" in cond else [value]
        return {r[0] for r in self._db.execute(sql, params)}

    def _file_ranges(self, f: Filters) -> list[tuple[int, int]]:
        sql, params = "SELECT seg_lo, seg_hi FROM files fl WHERE seg_lo IS NOT NULL", []
        for cond, value in (("(fl.media_path GLOB ? OR fl.name GLOB ?)", f.file_glob),
                            ("substr(fl.recorded, 1, 10) >= ?", f.since), ("substr(fl.recorded, 1, 10) <= ?", f.until),
                            ("EXISTS (SELECT 1 FROM tags t WHERE t.file_id = fl.id AND t.tag = ?)", f.tag)):
            if value is not None:
                sql += " AND " + cond
                params += [_sqlite_glob(value)] * 2 if "GLOB" in cond else [value]
        return self._db.execute(sql, params).fetchall()

    def _bodies(self, ids: Iterable[int]) -> dict[int, str]:
        return dict(self._db.execute("SELECT id, body FROM segments WHERE id IN (SELECT value FROM json_each(?))",
                                     (json.dumps(list(ids)),)))

    def vector_model(self) -> tuple[str, str] | None:
        if not self._db.execute("SELECT 1 FROM sqlite_master WHERE name = 'vector_model'").fetchone():
            return None
        row = self._db.execute("SELECT model, sha256 FROM vector_model").fetchone()
        return (row[0], row[1]) if row else None

    def _set_vector_model(self, model: str, sha256: str) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("CREATE TABLE IF NOT EXISTS vectors(id INTEGER PRIMARY KEY, v BLOB NOT NULL)")
            db.execute("CREATE TABLE IF NOT EXISTS vector_model(model TEXT NOT NULL, sha256 TEXT NOT NULL)")
            if not db.execute("SELECT 1 FROM vector_model").fetchone():
                db.execute("INSERT INTO vector_model VALUES(?, ?)", (model, sha256))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _unembedded(self, after: int, limit: int) -> list[tuple[int, str]]:
        return self._db.execute(
            "SELECT s.id, s.body FROM segments s WHERE s.id > ? AND NOT EXISTS (SELECT 1 FROM vectors v WHERE v.id = s.id)"
            " ORDER BY s.id LIMIT ?", (after, limit)).fetchall()

    def _store_vectors(self, ids: list[int], blobs: list[bytes]) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:  # a segment deleted meanwhile gets no vector
            db.executemany("INSERT OR REPLACE INTO vectors(id, v) SELECT ?1, ?2 WHERE EXISTS (SELECT 1 FROM segments"
                           " WHERE id = ?1)", zip(ids, blobs, strict=True))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _vector_mark(self) -> tuple:
        return (self._db.execute("SELECT max(id) FROM vectors").fetchone()[0],
                self._db.execute("SELECT count(*) FROM files").fetchone()[0])

    def _all_vectors(self) -> tuple[list[int], list[bytes]]:
        rows = self._db.execute("SELECT id, v FROM vectors ORDER BY id").fetchall()
        return [r[0] for r in rows], [r[1] for r in rows]

    def media(self, sha256: str) -> str | None:
        row = self._db.execute("SELECT media_path FROM files WHERE sha256 = ?", (sha256.lower(),)).fetchone()
        return row[0] if row else None

    def speakers(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT DISTINCT speaker FROM segments WHERE speaker IS NOT NULL"
                                               " ORDER BY speaker")]


_PG_SCHEMA = """
CREATE TABLE IF NOT EXISTS redact_files(
    id BIGSERIAL PRIMARY KEY, media_path TEXT NOT NULL UNIQUE, name TEXT NOT NULL, sha256 TEXT NOT NULL,
    recorded TEXT, duration DOUBLE PRECISION, language TEXT, model TEXT, indexed_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS redact_files_sha256 ON redact_files(sha256);
CREATE TABLE IF NOT EXISTS redact_tags(
    file_id BIGINT NOT NULL REFERENCES redact_files(id) ON DELETE CASCADE, tag TEXT NOT NULL,
    PRIMARY KEY(file_id, tag));
CREATE INDEX IF NOT EXISTS redact_tags_tag ON redact_tags(tag);
CREATE TABLE IF NOT EXISTS redact_segments(
    id BIGSERIAL PRIMARY KEY, file_id BIGINT NOT NULL REFERENCES redact_files(id) ON DELETE CASCADE,
    start_s DOUBLE PRECISION NOT NULL, end_s DOUBLE PRECISION NOT NULL, body TEXT NOT NULL, text TEXT,
    words BYTEA, tsv TSVECTOR NOT NULL, speaker TEXT, track INTEGER);
ALTER TABLE redact_segments ADD COLUMN IF NOT EXISTS speaker TEXT;
ALTER TABLE redact_segments ADD COLUMN IF NOT EXISTS track INTEGER;
CREATE INDEX IF NOT EXISTS redact_segments_file ON redact_segments(file_id);
CREATE INDEX IF NOT EXISTS redact_segments_tsv ON redact_segments USING GIN (tsv);
"""
_PG_LOCK = 0x7265_6461_6374  # advisory lock key ("redact") serialising schema creation and re-indexing


def _tsvector(body: str) -> str:
    """The tsvector literal of body with our tokenizer: folded tokens, 1-based positions, █ keeps its position."""
    positions: dict[str, list[int]] = {}
    pos = 0
    for word in body.split(" "):
        for tok in _word_tokens(word):
            pos += 1
            if tok == REDACTED or len(tok.encode()) > 2046:
                continue
            p = positions.setdefault(tok, [])
            if len(p) < 255:
                p.append(min(pos, 16383))
    return " ".join(f"'{tok}':{','.join(map(str, p))}" for tok, p in positions.items())


class _PostgresIndex(Index):
    def __init__(self, url: str, *, create: bool):
        try:
            import psycopg
        except ImportError:
            raise UserError("a postgresql:// index needs psycopg 3: pip install 'psycopg[binary]'") from None
        self._psycopg = psycopg
        self.spec = re.sub(r"//([^:/@]+):[^@/]*@", r"//\1:***@", url)  # never print a password
        try:
            # No server-side prepared statements: a generic plan cannot see how common a query's words are, and
            # the right plan (GIN bitmap for rare words, a plain scan that stops early for common ones) depends on it.
            self._db = psycopg.connect(url, autocommit=True, connect_timeout=15, prepare_threshold=None)
        except psycopg.Error as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(f"cannot connect to {self.spec}: {first}") from None
        with self._db.transaction():
            self._db.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_LOCK,))
            exists = self._db.execute("SELECT to_regclass('redact_segments') IS NOT NULL").fetchone()[0]
            if not exists and not create:
                raise UserError(f"no transcript index in {self.spec}: index transcripts first (redact index …)")
            self._db.execute(_PG_SCHEMA)  # IF NOT EXISTS throughout; an index made before speakers gains the column

    def _replace(self, meta: dict, tags: list[str], rows: list[_Segment]) -> None:
        db = self._db
        with db.transaction():
            db.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_LOCK,))
            db.execute(
                "DELETE FROM redact_files WHERE media_path = %s OR sha256 = %s", (meta["media_path"], meta["sha256"])
            )
            file_id = db.execute(
                "INSERT INTO redact_files(media_path, name, sha256, recorded, duration, language, model, indexed_at)"
                " VALUES(%(media_path)s, %(name)s, %(sha256)s, %(recorded)s, %(duration)s, %(language)s, %(model)s,"
                " %(indexed_at)s) RETURNING id",
                meta,
            ).fetchone()[0]
            with db.cursor() as cur:
                cur.executemany("INSERT INTO redact_tags(file_id, tag) VALUES(%s, %s)", [(file_id, t) for t in tags])
                with cur.copy(
                    "COPY redact_segments(file_id, start_s, end_s, body, text, words, tsv, speaker, track) FROM STDIN"
                ) as copy:
                    for r in rows:
                        copy.write_row((file_id, r.start, r.end, r.body, r.text, r.words, _tsvector(r.body), r.speaker,
                                        r.track))

    def remove(self, media_path: str) -> bool:
        with self._db.transaction():
            self._db.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_LOCK,))
            n = self._db.execute("DELETE FROM redact_files WHERE media_path = %s", (os.fspath(media_path),)).rowcount
        return n > 0

    def count(self) -> tuple[int, int]:
        return (
            self._db.execute("SELECT count(*) FROM redact_files").fetchone()[0],
            self._db.execute("SELECT count(*) FROM redact_segments").fetchone()[0],
        )

    def optimize(self) -> None:
        for table in ("redact_files", "redact_tags", "redact_segments"):
            self._db.execute(f"VACUUM ANALYZE {table}")

    def close(self) -> None:
        self._db.close()

    def _file_ids(self, f: Filters) -> list[int] | None:
        """The ids of the files the filters keep (None: no file-level filter)."""
        if not f.by_file and f.tag is None:
            return None
        sql, params = "SELECT f.id FROM redact_files f WHERE TRUE", {}
        if f.file_glob is not None:
            sql += " AND (f.media_path ~ %(re)s OR f.name ~ %(re)s)"
            params["re"] = _glob_regex(f.file_glob)
        if f.tag is not None:
            sql += " AND EXISTS (SELECT 1 FROM redact_tags t WHERE t.file_id = f.id AND t.tag = %(tag)s)"
            params["tag"] = f.tag
        if f.since is not None:
            sql += " AND left(f.recorded, 10) >= %(since)s"
            params["since"] = f.since
        if f.until is not None:
            sql += " AND left(f.recorded, 10) <= %(until)s"
            params["until"] = f.until
        try:
            return [r[0] for r in self._db.execute(sql, params)]
        except self._psycopg.errors.InvalidRegularExpression:
            raise UserError(f"--file: not a valid glob: {f.file_glob}") from None

    def _where(self, f: Filters, params: dict) -> str | None:
        """SQL conditions on redact_segments s for the filters (params filled in); None when no file can match."""
        sql = ""
        file_ids = self._file_ids(f)
        if file_ids is not None:
            if not file_ids:
                return None
            sql += " AND s.file_id = ANY(%(files)s)"
            params["files"] = file_ids
        if f.speaker is not None:
            sql += " AND s.speaker = %(speaker)s"
            params["speaker"] = f.speaker
        if f.track is not None:
            sql += " AND s.track = %(track)s"
            params["track"] = f.track
        return sql

    def _search(self, q: Query, limit: int, filters: Filters, window: int | None) -> tuple[list[tuple], bool]:
        db, psycopg = self._db, self._psycopg
        params: dict = {"q": q.tsquery(), "limit": limit, "window": None if window is None else window + 1}
        where = self._where(filters, params)
        if where is None:
            return [], False
        sql = (
            "SELECT s.id, ts_rank(s.tsv, q) AS score FROM redact_segments s, CAST(%(q)s AS tsquery) q"
            " WHERE s.tsv @@ q" + where
        )
        if window is None:
            sql += " ORDER BY score DESC, s.id DESC LIMIT %(limit)s"
        else:
            # The first `window` matches the GIN bitmap scan yields (table order, about the oldest first): asking
            # for the newest (ORDER BY id DESC) lets the planner walk the primary key backwards testing every row,
            # measured at 0.3-1.3 s for words in 1-4 % of 1M segments.
            sql = (
                f"SELECT id, score, count(*) OVER () FROM ({sql} LIMIT %(window)s) w"
                " ORDER BY score DESC, id DESC LIMIT %(limit)s"
            )
        try:
            ranked = db.execute(sql, params).fetchall()
        except psycopg.errors.SyntaxError as e:  # a tsquery our translation should never produce: a bug
            raise RuntimeError(f"PostgreSQL rejected tsquery {params['q']!r}: {e}") from e
        if not ranked:
            return [], False
        return self._rows({r[0]: float(r[1]) for r in ranked}), window is not None and ranked[0][2] > window

    def _rows(self, scores: dict[int, float]) -> list[tuple]:
        """The rows Index._hits takes, for segment ids -> score, in the dict's order."""
        info = {
            r[0]: r[1:]
            for r in self._db.execute(
                "SELECT s.id, f.media_path, f.sha256, s.start_s, s.end_s, s.body, s.text, s.words,"
                " ARRAY(SELECT t.tag FROM redact_tags t WHERE t.file_id = f.id ORDER BY t.tag), s.speaker, s.track,"
                " f.recorded FROM redact_segments s JOIN redact_files f ON f.id = s.file_id WHERE s.id = ANY(%s)",
                (list(scores),),
            )
        }
        return [(i, *info[i][:7], score, *info[i][7:]) for i, score in scores.items() if i in info]

    def _filter_ids(self, ids: list[int], f: Filters) -> set[int]:
        params: dict = {"ids": ids}
        where = self._where(f, params)
        if where is None:
            return set()
        return {r[0] for r in self._db.execute(f"SELECT s.id FROM redact_segments s WHERE s.id = ANY(%(ids)s){where}",
                                               params)}

    def _file_ranges(self, f: Filters) -> list[tuple[int, int]]:
        file_ids = self._file_ids(f) or []
        return self._db.execute("SELECT min(id), max(id) FROM redact_segments WHERE file_id = ANY(%s) GROUP BY file_id",
                                (file_ids,)).fetchall()

    def _bodies(self, ids: Iterable[int]) -> dict[int, str]:
        return dict(self._db.execute("SELECT id, body FROM redact_segments WHERE id = ANY(%s)", (list(ids),)).fetchall())

    def vector_model(self) -> tuple[str, str] | None:
        if not self._db.execute("SELECT to_regclass('redact_vector_model') IS NOT NULL").fetchone()[0]:
            return None
        row = self._db.execute("SELECT model, sha256 FROM redact_vector_model").fetchone()
        return (row[0], row[1]) if row else None

    def _set_vector_model(self, model: str, sha256: str) -> None:
        with self._db.transaction():
            self._db.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_LOCK,))
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS redact_vectors(id BIGINT PRIMARY KEY REFERENCES redact_segments(id)"
                " ON DELETE CASCADE, v BYTEA NOT NULL);"
                "CREATE TABLE IF NOT EXISTS redact_vector_model(model TEXT NOT NULL, sha256 TEXT NOT NULL)")
            if not self._db.execute("SELECT 1 FROM redact_vector_model").fetchone():
                self._db.execute("INSERT INTO redact_vector_model VALUES(%s, %s)", (model, sha256))

    def _unembedded(self, after: int, limit: int) -> list[tuple[int, str]]:
        return self._db.execute(
            "SELECT s.id, s.body FROM redact_segments s WHERE s.id > %s AND NOT EXISTS"
            " (SELECT 1 FROM redact_vectors v WHERE v.id = s.id) ORDER BY s.id LIMIT %s", (after, limit)).fetchall()

    def _store_vectors(self, ids: list[int], blobs: list[bytes]) -> None:
        with self._db.transaction(), self._db.cursor() as cur:  # a segment deleted meanwhile gets no vector
            cur.executemany("INSERT INTO redact_vectors(id, v) SELECT %s, %s WHERE EXISTS (SELECT 1 FROM redact_segments"
                            " WHERE id = %s) ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v",
                            [(i, b, i) for i, b in zip(ids, blobs, strict=True)])

    def _vector_mark(self) -> tuple:
        return self._db.execute("SELECT (SELECT max(id) FROM redact_vectors), (SELECT count(*) FROM redact_files)"
                                ).fetchone()

    def _all_vectors(self) -> tuple[list[int], list[bytes]]:
        rows = self._db.execute("SELECT id, v FROM redact_vectors ORDER BY id").fetchall()
        return [r[0] for r in rows], [bytes(r[1]) for r in rows]

    def media(self, sha256: str) -> str | None:
        row = self._db.execute("SELECT media_path FROM redact_files WHERE sha256 = %s", (sha256.lower(),)).fetchone()
        return row[0] if row else None

    def speakers(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT DISTINCT speaker FROM redact_segments WHERE speaker IS NOT NULL"
                                               " ORDER BY speaker")]


def read_transcript(path: Path) -> tuple[dict, str]:
    """A `<stem>.transcript.json` and the absolute path of the media it describes: a relative `file` is taken
    beside the transcript where it is there (outputs moved together), else from the working folder."""
    try:
        transcript = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: cannot read transcript JSON: {e}") from None
    if not isinstance(transcript, dict) or not transcript.get("file") or not transcript.get("sha256"):
        raise UserError(f"{path}: not a transcript (needs \"file\", \"sha256\" and \"segments\")")
    media = Path(transcript["file"])
    if not media.is_absolute() and (path.parent / media).exists():
        media = path.parent / media
    return transcript, os.path.abspath(media)


def open_index(spec: str | os.PathLike | None = None, *, create: bool = True) -> Index:
    """Open (and create unless create=False) a transcript index.

    spec: None for index.sqlite in the state home (`models.state_home`); a postgresql:// (or postgres://) URL for
    a shared PostgreSQL database (tables redact_files, redact_tags, redact_segments); anything else is a SQLite
    file path.
    With create=False a missing index is a UserError (what `redact search` wants).
    """
    if spec is None or str(spec) == "":
        from redact.models import state_home

        home = state_home()
        if create:
            home.mkdir(parents=True, exist_ok=True)
        return _SqliteIndex(home / "index.sqlite", create=create)
    text = os.fspath(spec)
    if re.match(r"postgres(ql)?://", text):
        return _PostgresIndex(text, create=create)
    if "://" in text:
        raise UserError(f"unsupported index spec {text!r}: use a file path or a postgresql:// URL")
    return _SqliteIndex(Path(text).expanduser(), create=create)
