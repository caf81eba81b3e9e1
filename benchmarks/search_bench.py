"""Transcript search benchmark: build an index of N segments from real transcript text, time queries.

    .venv/bin/python benchmarks/search_bench.py --segments 1000000 --backend sqlite
    source scripts/start_postgres.sh
    .venv/bin/python benchmarks/search_bench.py --segments 1000000 --backend postgres

Text: every reference transcript in ../shared/evaldata (speech/*/transcripts.tsv and video/grid/transcripts.tsv,
798 words, 317 distinct), concatenated in a cycle; each segment is a window of 6-20 consecutive words starting at a
random word, and one in four has a second window spliced on, so segments recombine real phrases. Words get synthetic
times (0.25-0.55 s each), files hold --per-file segments each, tagged with one of 20 case tags, and about one number
word in three is marked redacted (category NUMBER), as the audio stage would. The vocabulary is tiny, so most words
occur in 1-10 % of all segments and "the" in about half: query match sets are far larger than in real transcripts,
which makes ranking slower than it would be (a worst case for BM25/ts_rank, which score every matching row).

Reported: build time (Index.add per file, then Index.optimize), index size on disk, and the latency of
Index.search (limit 20, what `redact search` calls, snippets and word times included) for 20 varied queries:
each query runs --repeat times after one warm-up; p50/p95 are over the per-query medians, and over all runs;
wall time and this process's CPU time (on a shared machine the CPU time is the steadier figure; PostgreSQL's work
happens in the server, so its CPU time is only the client's). --rank-window sets Index.search(rank_window=...)
(default redact.search.RANK_WINDOW); --exhaustive also times rank_window=None (every match ranked); --count
reports how many segments each query matches. --keep/--reuse keep an index and query it again without rebuilding.

--meaning (SQLite) also gives every segment a meaning vector (Index.embed, the static embedder: build time and
size with them) and times the same queries as hybrid searches (Index.search(meaning=...)). --page serves the
search page on the index (redact.searchpage, as `redact serve` does) and times the page's own request,
GET /api/search (20 hits a page: words only, and with --meaning hybrid too), from an HTTP client on the same machine
(server side), then in Debian's chromium (when /usr/bin/chromium exists): the page ready (navigation to the
page's init done: /api/info answered) and each query typed and submitted, timed by the page itself (fetch
round trip, performance.now()), after one untimed search (the server side drops its first run too).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.provenance import write_result  # noqa: E402
from redact.search import RANK_WINDOW, open_index  # noqa: E402

EVALDATA = ROOT.parent / "shared" / "evaldata"
NUMBERS = {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"}
TAGS = [f"case-{k:02d}" for k in range(20)]

QUERIES = [  # (query, file_glob, tag): single words rare to common, phrases, prefixes, OR, exclusions, filters
    ("woodcutters", None, None),
    ("dashwood", None, None),
    ("printing", None, None),
    ("blue", None, None),
    ("the", None, None),
    ('"chinese took impressions"', None, None),
    ('"ill disposed"', None, None),
    ('"set white with"', None, None),
    ('"the only sense"', None, None),
    ("impress*", None, None),
    ("wood*", None, None),
    ("pr*", None, None),
    ("clubs OR spades", None, None),
    ("queen OR king OR hearts", None, None),
    ("letters", "*/case-0[0-4]/*", None),
    ("letters -printing", None, None),
    ("type printed letters", None, None),
    ("printing", "*/file-000[0-9]*", None),
    ("dashwood", None, "case-07"),
    ('"white with" -blue', "*/file-0019*", "case-03"),
]


def corpus() -> list[str]:
    words = []
    tsvs = sorted((EVALDATA / "speech").glob("*/transcripts.tsv")) + [EVALDATA / "video/grid/transcripts.tsv"]
    for path in tsvs:
        for line in path.read_text(encoding="utf-8").splitlines():
            if "\t" in line:
                words += line.split("\t", 1)[1].split()
    return words


def transcripts(n_segments: int, per_file: int, seed: int):
    """Yield (transcript, media_path, sha256, tags) for files of per_file segments, n_segments in all."""
    rng = random.Random(seed)
    words = corpus()
    n_words = len(words)
    made, file_no = 0, 0
    while made < n_segments:
        count = min(per_file, n_segments - made)
        t, segments, redactions = 0.0, [], []
        for k in range(count):
            picked = []
            for _ in range(2 if rng.random() < 0.25 else 1):
                start, length = rng.randrange(n_words), rng.randint(6, 20)
                picked += [words[(start + j) % n_words] for j in range(length)]
            seg_words, text, seg_start = [], [], t
            for raw in picked:
                dur = rng.uniform(0.25, 0.55)
                norm = re.sub(r"\W", "", raw.lower())
                category = "NUMBER" if norm in NUMBERS and rng.random() < 0.35 else None
                seg_words.append({"start": round(t, 3), "end": round(t + dur * 0.9, 3),
                                  "word": " " + (f"[REDACTED: {category}]" if category else raw),
                                  "probability": 0.9, "redacted": category})
                if category:
                    redactions.append({"start": round(t, 3), "end": round(t + dur * 0.9, 3), "category": category})
                    if not text or text[-1] != f"[REDACTED: {category}]":
                        text.append(f"[REDACTED: {category}]")
                else:
                    text.append(raw)
                t += dur
            segments.append({"id": k, "start": round(seg_start, 3), "end": round(t, 3), "text": " " + " ".join(text),
                             "words": seg_words})
            t += rng.uniform(0.5, 3.0)
        media = f"/bench/{TAGS[file_no % 20]}/file-{file_no:06d}.redacted.mp4"
        sha = hashlib.sha256(media.encode()).hexdigest()
        transcript = {"file": media, "sha256": sha, "duration": round(t, 3), "language": "en",
                      "model": {"id": "bench", "sha256": ""}, "segments": segments, "redactions": redactions}
        yield transcript, media, sha, [TAGS[file_no % 20]]
        made += count
        file_no += 1


def build(index, args) -> dict:
    t0 = time.perf_counter()
    last = t0
    done = 0
    for transcript, media, sha, tags in transcripts(args.segments, args.per_file, args.seed):
        done += index.add(transcript, media_path=media, sha256=sha, tags=tags)
        if time.perf_counter() - last > 30:
            last = time.perf_counter()
            rate = done / (last - t0)
            print(f"  {done:,} segments, {rate:,.0f}/s", file=sys.stderr, flush=True)
    t_add = time.perf_counter() - t0
    t1 = time.perf_counter()
    index.optimize()
    t_opt = time.perf_counter() - t1
    return {"segments": done, "add_s": round(t_add, 1), "optimize_s": round(t_opt, 1),
            "segments_per_s": round(done / t_add)}


def time_queries(index, repeat: int, exhaustive: bool, window: int, meaning=None) -> dict:
    per_query, all_runs = [], []
    for query, glob, tag in QUERIES:
        index.search(query, limit=20, file_glob=glob, tag=tag, rank_window=window, meaning=meaning)  # warm-up
        runs, cpu = [], []
        for _ in range(repeat):
            t, c = time.perf_counter(), time.process_time()
            hits = index.search(query, limit=20, file_glob=glob, tag=tag, rank_window=window, meaning=meaning)
            runs.append((time.perf_counter() - t) * 1000)
            cpu.append((time.process_time() - c) * 1000)  # this process only: SQLite runs in it, PostgreSQL not
        all_runs += runs
        row = {"query": query, "file": glob, "tag": tag, "hits": len(hits), "truncated": hits.truncated,
               "median_ms": round(statistics.median(runs), 2), "max_ms": round(max(runs), 2),
               "cpu_median_ms": round(statistics.median(cpu), 2),
               "first": f"{hits[0].file} {hits[0].start:.3f} {hits[0].snippet}" if hits else None}
        if exhaustive:  # every match ranked (rank_window=None): the cost the window avoids
            index.search(query, limit=20, file_glob=glob, tag=tag, rank_window=None)
            runs = []
            for _ in range(max(1, repeat // 2)):
                t = time.perf_counter()
                index.search(query, limit=20, file_glob=glob, tag=tag, rank_window=None)
                runs.append((time.perf_counter() - t) * 1000)
            row["exhaustive_median_ms"] = round(statistics.median(runs), 2)
        per_query.append(row)
    medians = sorted(q["median_ms"] for q in per_query)
    cpu_medians = [q["cpu_median_ms"] for q in per_query]

    extra = {}
    if exhaustive:
        ex = [q["exhaustive_median_ms"] for q in per_query]
        extra = {"exhaustive_p50_ms": pct(ex, 50), "exhaustive_p95_ms": pct(ex, 95)}
    return {"per_query": per_query, **extra, "cpu_p50_ms": pct(cpu_medians, 50), "cpu_p95_ms": pct(cpu_medians, 95),
            "p50_ms": pct(medians, 50), "p95_ms": pct(medians, 95), "max_ms": medians[-1],
            "p50_ms_all_runs": pct(all_runs, 50), "p95_ms_all_runs": pct(all_runs, 95)}


def pct(values, p):
    values = sorted(values)
    return round(values[min(len(values) - 1, max(0, round(p / 100 * len(values) + 0.5) - 1))], 2)


def embed(index) -> tuple[dict, object]:
    from redact.meaning import Embedder

    t0 = time.perf_counter()
    embedder = Embedder.load()
    loaded = time.perf_counter() - t0
    t0, last = time.perf_counter(), time.perf_counter()

    def progress(done: int) -> None:
        nonlocal last
        if time.perf_counter() - last > 30:
            last = time.perf_counter()
            print(f"  embedded {done:,} segments, {done / (last - t0):,.0f}/s", file=sys.stderr, flush=True)

    n = index.embed(embedder, progress=progress)
    took = time.perf_counter() - t0
    return {"embedder": embedder.id, "embedder_load_s": round(loaded, 2), "embed_s": round(took, 1),
            "embedded_per_s": round(n / took) if took else None}, embedder


def time_page(index, repeat: int, meaning: bool) -> dict:
    """The search page's own request, from a client on this machine and from chromium (see the docstring)."""
    import http.client
    import socket
    import threading
    from urllib.parse import urlencode

    import uvicorn

    from redact.review.server import allowed_hosts
    from redact.searchpage import create_app

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    t0 = time.perf_counter()
    log = Path(tempfile.mkdtemp(prefix="redact-page-bench-")) / "access.jsonl"
    app = create_app(index, access_log=log, hosts=allowed_hosts("127.0.0.1", port))
    out: dict = {"app_start_s": round(time.perf_counter() - t0, 2)}  # speakers listed, vectors loaded
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    host, token = f"127.0.0.1:{port}", app.state.token
    try:
        conn = http.client.HTTPConnection(host, timeout=60)
        medians = []
        for query, glob, tag in QUERIES:
            params = {"q": query, **({"file": glob} if glob else {}), **({"tag": tag} if tag else {}),
                      **({"meaning": "1"} if meaning else {})}
            runs = []
            for _ in range(repeat + 1):
                t = time.perf_counter()
                conn.request("GET", "/api/search?" + urlencode(params), headers={"Host": host, "X-Redact-Token": token})
                response = conn.getresponse()
                body = response.read()
                runs.append((time.perf_counter() - t) * 1000)
                assert response.status == 200, body[:200]
            medians.append(statistics.median(runs[1:]))
        conn.close()
        out.update({"server_p50_ms": pct(medians, 50), "server_p95_ms": pct(medians, 95),
                    "server_max_ms": round(max(medians), 2)})
        if Path("/usr/bin/chromium").exists():
            out.update(time_browser(host, token, meaning))
    finally:
        server.should_exit = True
        thread.join(10)
    return out


def time_browser(host: str, token: str, meaning: bool) -> dict:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            ready = []
            for _ in range(3):
                t = time.perf_counter()
                page.goto(f"http://{host}/?token={token}")
                page.wait_for_selector("body[data-ready]")
                ready.append((time.perf_counter() - t) * 1000)
            if meaning:
                page.check("#meaning")
            took = []
            for n, (query, glob, tag) in enumerate([QUERIES[-1], *QUERIES]):  # the first, untimed, warms up as the
                # server-side timing's dropped first run does
                page.fill("#file", glob or "")
                page.fill("#tag", tag or "")
                page.fill("#q", query)
                before = page.get_attribute("body", "data-searched") or ""
                page.press("#q", "Enter")
                page.wait_for_function("b => (document.body.dataset.searched || '') !== b", arg=before)
                if n:
                    took.append(float(page.get_attribute("#summary", "data-ms")))
        finally:
            browser.close()
    return {"page_ready_ms": round(statistics.median(ready), 1), "page_ready_first_ms": round(ready[0], 1),
            "browser_search_p50_ms": pct(took, 50), "browser_search_p95_ms": pct(took, 95),
            "browser_search_ms": [[q, g, t, ms] for (q, g, t), ms in zip(QUERIES, took, strict=True)]}


def sqlite_matches(path: str) -> dict[str, int]:
    """How many segments each plain query matches (context for the latencies; uses the private schema)."""
    import sqlite3

    from redact.search import parse_query

    db = sqlite3.connect(path)
    return {q: db.execute("SELECT count(*) FROM segments_fts WHERE segments_fts MATCH ?",
                          (parse_query(q).fts5(),)).fetchone()[0] for q, g, t in QUERIES if g is None and t is None}


def run_sqlite(args) -> dict:
    folder = Path(args.sqlite_dir or tempfile.mkdtemp(prefix="redact-search-bench-"))
    path = folder / f"bench-{args.segments}.sqlite"
    result = {"backend": "sqlite", "path": str(path)}
    if args.reuse and path.exists():
        result["reused"] = True
    else:
        for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            p.unlink(missing_ok=True)
        index = open_index(str(path))
        result.update(build(index, args))
        if args.meaning:
            result.update(embed(index)[0])
        index._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        index.close()
    result["size_mb"] = round(path.stat().st_size / 1e6, 1)
    index = open_index(str(path), create=False)  # a fresh connection: cold statement cache, warm OS cache
    result.update(time_queries(index, args.repeat, args.exhaustive, args.rank_window))
    if args.meaning:
        from redact.meaning import Embedder

        embedder = Embedder.for_index(index)
        t0 = time.perf_counter()
        index.nearest(embedder)
        result["vectors_load_s"] = round(time.perf_counter() - t0, 2)
        result["hybrid"] = time_queries(index, args.repeat, False, args.rank_window, embedder)
    if args.page:  # the page's words-only search, and with --meaning its hybrid one too
        result["page_words"] = time_page(index, args.repeat, False)
        if args.meaning:
            result["page"] = time_page(index, args.repeat, True)
    index.close()
    if args.count:
        counts = sqlite_matches(str(path))
        for q in result["per_query"]:
            q["matches"] = counts.get(q["query"]) if q["file"] is None and q["tag"] is None else None
    if not args.keep:
        for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            p.unlink(missing_ok=True)
    return result


def run_postgres(args) -> dict:
    import psycopg

    url = args.pg or os.environ.get("REDACT_TEST_PG")
    if not url:
        out = subprocess.run(["bash", str(ROOT / "scripts/start_postgres.sh")], capture_output=True, text=True,
                             check=True)
        url = out.stdout.strip().splitlines()[-1]
    schema = args.pg_schema or f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as db:
        exists = db.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
        if exists and not args.reuse:
            sys.exit(f"schema {schema} exists: pass --reuse to query it, or drop it")
        if not exists:
            db.execute(f"CREATE SCHEMA {schema}")
    spec = f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"
    try:
        index = open_index(spec)
        result = {"backend": "postgres", "schema": schema}
        if exists:
            result["reused"] = True
            result["path"] = schema
        else:
            result.update(build(index, args))
        result["size_mb"] = round(float(index._db.execute(
            "SELECT sum(pg_total_relation_size(c)) FROM unnest(ARRAY['redact_files', 'redact_tags',"
            " 'redact_segments']::regclass[]) c").fetchone()[0]) / 1e6, 1)
        result["server"] = index._db.execute("SHOW server_version").fetchone()[0]
        result.update(time_queries(index, args.repeat, args.exhaustive, args.rank_window))
        if args.count:
            for q in result["per_query"]:
                if q["file"] is None and q["tag"] is None:
                    from redact.search import parse_query

                    q["matches"] = index._db.execute(
                        "SELECT count(*) FROM redact_segments WHERE tsv @@ CAST(%s AS tsquery)",
                        (parse_query(q["query"]).tsquery(),)).fetchone()[0]
        index.close()
    finally:
        if not args.keep and not exists:
            with psycopg.connect(url, autocommit=True) as db:
                db.execute(f"DROP SCHEMA {schema} CASCADE")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--segments", type=int, default=1_000_000)
    ap.add_argument("--per-file", type=int, default=500, help="segments per media file")
    ap.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    ap.add_argument("--sqlite-dir", help="folder for the SQLite file (default: a new temporary folder)")
    ap.add_argument("--pg", help="PostgreSQL URL (default $REDACT_TEST_PG, else scripts/start_postgres.sh)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--count", action="store_true", help="also count the segments each query matches")
    ap.add_argument("--rank-window", type=int, default=RANK_WINDOW, help="Index.search(rank_window=…)")
    ap.add_argument("--reuse", action="store_true", help="query an index kept by --keep instead of building one")
    ap.add_argument("--pg-schema", help="PostgreSQL schema to build in (or, with --reuse, to query)")
    ap.add_argument("--exhaustive", action="store_true", help="also time every query with rank_window=None")
    ap.add_argument("--keep", action="store_true", help="keep the index (SQLite file / PostgreSQL schema)")
    ap.add_argument("--json", help="also write the results to this JSON file")
    ap.add_argument("--meaning", action="store_true", help="SQLite: embed every segment, time hybrid searches too")
    ap.add_argument("--page", action="store_true", help="SQLite: time the search page's request (server, browser)")
    args = ap.parse_args()

    results = []
    for backend in (["sqlite", "postgres"] if args.backend == "both" else [args.backend]):
        print(f"{backend}: indexing {args.segments:,} segments", file=sys.stderr, flush=True)
        r = run_sqlite(args) if backend == "sqlite" else run_postgres(args)
        results.append(r)
        if r.get("reused"):
            print(f"\n== {backend}: reused {r['path']}; index {r['size_mb']} MB")
        else:
            print(f"\n== {backend}: {r['segments']:,} segments in {r['add_s']} s ({r['segments_per_s']:,}/s)"
                  f" + optimize {r['optimize_s']} s; index {r['size_mb']} MB")
        print(f"   Index.search latency over {len(QUERIES)} queries (median of {args.repeat} runs each,"
              f" rank_window {args.rank_window}): p50 {r['p50_ms']} ms, p95 {r['p95_ms']} ms, max {r['max_ms']} ms"
              f" (all runs: p50 {r['p50_ms_all_runs']}, p95 {r['p95_ms_all_runs']});"
              f" CPU time of this process p50 {r['cpu_p50_ms']} ms, p95 {r['cpu_p95_ms']} ms")
        if args.exhaustive:
            print(f"   ranking every match (rank_window=None): p50 {r['exhaustive_p50_ms']} ms,"
                  f" p95 {r['exhaustive_p95_ms']} ms")
        if "hybrid" in r:
            h = r["hybrid"]
            print(f"   embedded in {r.get('embed_s')} s ({r.get('embedded_per_s')}/s), vectors loaded in"
                  f" {r['vectors_load_s']} s; hybrid search p50 {h['p50_ms']} ms, p95 {h['p95_ms']} ms, max {h['max_ms']} ms")
        if "page" in r:
            print(f"   page: {json.dumps(r['page'])}")
        for q in r["per_query"]:
            extra = "".join(f" --{k} {q[k]}" for k in ("file", "tag") if q[k])
            matches = f" matches {q['matches']:>9,}" if q.get("matches") is not None else ""
            full = f" (all ranked {q['exhaustive_median_ms']:8.2f} ms)" if "exhaustive_median_ms" in q else ""
            cut = " window-truncated" if q["truncated"] else ""
            print(f"   {q['median_ms']:8.2f} ms (cpu {q['cpu_median_ms']:7.2f}){full}"
                  f"  hits {q['hits']:2}{matches}  {q['query']}{extra}{cut}")
    if args.json:
        write_result(Path(args.json), {"args": vars(args), "results": results}, __file__)


if __name__ == "__main__":
    main()
