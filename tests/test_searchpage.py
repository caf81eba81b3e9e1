"""The search page on real transcripts: the redacted GRID clip from a real run (conftest.grid_run) and real
LJSpeech speech transcribed by the audio stage (an original: listed, never played). The server refuses requests
without its token (or, behind a proxy, the user header) and logs nothing for them; a real browser (Debian's
chromium driven by Playwright) searches, filters by speaker, plays a hit from a second before it and exports CSV."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import pytest
from test_search import pg_schema_url, pg_url  # noqa: F401 - fixtures

from benchmarks.review_task import CHROMIUM_ARGS, threaded
from conftest import EVALDATA, REDACT, wait_until
from redact.review.server import allowed_hosts
from redact.search import Index, open_index
from redact.searchpage import create_app, open_source

LJ = EVALDATA / "speech" / "ljspeech" / "wavs" / "LJ001-0001.wav"
READER = "Reader"  # the speaker name a reviewer gave the LJSpeech voice


class Server(NamedTuple):
    host: str
    token: str
    log: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}/?token={self.token}"

    def get(self, path: str, headers: dict | None = None) -> tuple[int, bytes, dict]:
        import http.client

        conn = http.client.HTTPConnection(self.host, timeout=30)
        conn.request("GET", path.replace(" ", "%20").replace('"', "%22"), headers={"Host": self.host, **(headers or {})})
        response = conn.getresponse()
        body = response.read()
        conn.close()
        return response.status, body, dict(response.getheaders())

    def entries(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines()] if self.log.exists() else []


@pytest.fixture(scope="module")
def outdir(grid_run: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("search-page") / "out"
    shutil.copytree(grid_run, out)
    return out


@pytest.fixture(scope="module")
def spoken(outdir: Path, tmp_path_factory) -> dict:
    """The run's transcript, and LJSpeech's first sentence through the real audio stage (whisper-tiny-en), the
    voice named READER as a reviewer would."""
    from redact.audio import AudioOptions, process_audio

    work = tmp_path_factory.mktemp("lj")
    lj = process_audio(LJ, LJ.stem, work, AudioOptions(asr_model="whisper-tiny-en")).transcript
    for segment in lj["segments"]:
        segment["speaker"] = READER
    grid = json.loads((outdir / "bbaf2n.transcript.json").read_text())
    return {"grid": grid, "lj": lj}


def fill(index: Index, outdir: Path, spoken: dict) -> None:
    """The run's transcript as `redact serve OUTDIR` indexes it, and the LJSpeech original beside it."""
    grid = spoken["grid"]
    index.add(grid, media_path=grid["file"], sha256=grid["sha256"], recorded="2024-06-03T10:00:00", tags=["case-1"])
    index.add(spoken["lj"], media_path=str(LJ), sha256=spoken["lj"]["sha256"], recorded="2023-01-15T08:30:00")


@contextmanager
def serving(index: Index, log: Path, user_header: str | None = None) -> Iterator[Server]:
    def build(port: int):
        return create_app(index, access_log=log, hosts=allowed_hosts("127.0.0.1", port), user_header=user_header)

    with threaded(build) as (port, app):
        yield Server(f"127.0.0.1:{port}", app.state.token, log)


@pytest.fixture(scope="module")
def server(outdir: Path, spoken: dict, tmp_path_factory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("served")
    with open_index(folder / "index.sqlite") as index:
        fill(index, outdir, spoken)
        with serving(index, folder / "access.jsonl") as running:
            yield running


def word_at(transcript: dict, after: float) -> dict:
    """The first word of 3 letters or more said `after` seconds or later (the page plays from a second before it)."""
    return next(w for s in transcript["segments"] for w in s["words"] if w["start"] >= after and len(query_word(w)) > 2)


def query_word(word: dict) -> str:
    return "".join(c for c in word["word"] if c.isalnum()).lower()


# ------------------------------------------------------------------------------------------------- the API
def test_token_required_and_refusals_log_nothing(server: Server) -> None:
    before = server.entries()
    for path in ["/", "/api/search?q=the", "/api/export.csv?q=the", "/api/play?media=" + "0" * 64 + "&t=1"]:
        assert server.get(path)[0] == 401, path
        assert server.get(path, {"X-Redact-Token": "wrong"})[0] == 403, path
    assert server.get("/api/search?q=the", {"Host": "evil.example:80"})[0] == 403
    assert server.entries() == before


def test_search_filters_and_log(server: Server, spoken: dict) -> None:
    auth = {"X-Redact-Token": server.token}
    word = query_word(word_at(spoken["grid"], 1.0))
    lj_word = query_word(spoken["lj"]["segments"][0]["words"][0])
    both = f"{word} OR {lj_word}"
    status, body, _ = server.get(f"/api/search?q={both}", auth)
    hits = json.loads(body)["hits"]
    assert status == 200 and {h["name"] for h in hits} == {"bbaf2n.redacted.mp4", LJ.name}, hits
    for query, name in [(f"speaker={READER}", LJ.name), ("tag=case-1", "bbaf2n.redacted.mp4"),
                        ("since=2024-01-01", "bbaf2n.redacted.mp4"), ("until=2023-12-31", LJ.name),
                        ("file=*.wav", LJ.name), ("track=1&since=2024-06-03&until=2024-06-03", "bbaf2n.redacted.mp4")]:
        hits = json.loads(server.get(f"/api/search?q={both}&{query}", auth)[1])["hits"]
        assert [h["name"] for h in hits] == [name], query
    assert json.loads(server.get(f"/api/search?q={both}&track=2", auth)[1])["hits"] == []
    assert server.get("/api/search?q=%22open", auth)[:2] == (400, b'unbalanced double quote in query: close the phrase with "')
    assert server.get(f"/api/search?q={word}&since=June", auth)[0] == 400
    last = server.entries()[-1]  # malformed searches answer 400 and are not searches: not logged
    assert last["event"] == "search" and last["user"] and last["query"] == both and last["hits"] == 0
    assert last["filters"] == {"track": 2}


def test_only_redacted_outputs_are_played(server: Server, spoken: dict, outdir: Path) -> None:
    auth = {"X-Redact-Token": server.token}
    lj_word = query_word(spoken["lj"]["segments"][0]["words"][0])
    hit = json.loads(server.get(f"/api/search?q={lj_word}", auth)[1])["hits"][0]
    assert hit["name"] == LJ.name and hit["media"] is None  # an original: listed, never served
    for path in [f"/api/play?media={spoken['lj']['sha256']}&t=1", f"/media/{spoken['lj']['sha256']}", "/media/..%2f..",
                 "/media/" + "a" * 64]:
        assert server.get(path, auth)[0] in (400, 404), path
    grid = spoken["grid"]
    before = len(server.entries())
    status, body, _ = server.get(f"/api/play?media={grid['sha256']}&t=1.5", auth)
    assert status == 200 and json.loads(body) == {"url": f"/media/{grid['sha256']}", "start": 0.5, "at": 1.5,
                                                  "name": "bbaf2n.redacted.mp4"}
    status, body, headers = server.get(f"/media/{grid['sha256']}", {**auth, "Range": "bytes=0-99"})
    assert status == 206 and body == (outdir / "bbaf2n.redacted.mp4").read_bytes()[:100]
    played = server.entries()[before:]
    assert [e["event"] for e in played] == ["play"] and played[0]["t"] == 1.5  # one line per play, not per Range


def test_user_header_mode(outdir: Path, spoken: dict, tmp_path: Path) -> None:
    with open_index(tmp_path / "index.sqlite") as index:
        fill(index, outdir, spoken)
        with serving(index, tmp_path / "access.jsonl", user_header="X-Remote-User") as server:
            assert server.get("/api/search?q=the")[0] == 401
            assert server.get("/api/search?q=the", {"X-Redact-Token": server.token})[0] == 401  # a token is no user
            assert server.get("/api/search?q=the", {"X-Remote-User": " "})[0] == 401
            assert not server.log.exists() or server.log.read_text() == ""
            status, body, headers = server.get("/", {"X-Remote-User": "a.analyst"})
            assert status == 200 and b"a.analyst" in body and "set-cookie" not in {k.lower() for k in headers}
            assert server.get("/api/search?q=the", {"X-Remote-User": "a.analyst"})[0] == 200
            assert [(e["user"], e["event"]) for e in server.entries()] == [("a.analyst", "search")]


def test_outdirs_mode_and_postgres(outdir: Path, spoken: dict, pg_schema_url: str, tmp_path: Path) -> None:  # noqa: F811
    word = query_word(word_at(spoken["grid"], 1.0))
    with open_source([outdir], workdir=tmp_path) as index:
        hits = index.search(word)
        assert [(Path(h.file).name, h.speaker, h.track) for h in hits] == [("bbaf2n.redacted.mp4", "S1", 1)]
    with open_index(pg_schema_url) as index:
        fill(index, outdir, spoken)
        with serving(index, tmp_path / "pg.jsonl") as server:
            auth = {"X-Redact-Token": server.token}
            hits = json.loads(server.get(f"/api/search?q={word}&speaker=S1&since=2024-06-01", auth)[1])["hits"]
            assert [(h["name"], h["start"]) for h in hits] == [("bbaf2n.redacted.mp4", word_at(spoken["grid"], 1.0)["start"])]
            assert hits[0]["media"] == spoken["grid"]["sha256"]
            rows = list(csv.reader(io.StringIO(server.get(f"/api/export.csv?q={word}", auth)[1].decode())))
            assert rows[0] == ["file", "start", "end", "speaker", "text", "link"] and len(rows) == 2


def test_meaning_switch(outdir: Path, spoken: dict, tmp_path: Path) -> None:
    """Output folders served with --meaning: the page offers the switch, and a paraphrase of what the GRID speaker
    said finds it by meaning alone."""
    said = " ".join(w["word"].strip() for s in spoken["grid"]["segments"] for w in s["words"])
    with open_source([outdir], workdir=tmp_path, meaning=True) as index, serving(index, tmp_path / "a.jsonl") as server:
        auth = {"X-Redact-Token": server.token}
        assert json.loads(server.get("/api/info", auth)[1])["meaning"] is True
        # the words as plain words (whisper may hear "F-Tuner" as "F" "-Tuner": a leading - is an exclusion in the
        # query syntax), and one word that occurs nowhere: the words alone find nothing
        query = re.sub(r"[^\w\s]", " ", said).lower() + " zzqx"
        assert json.loads(server.get(f"/api/search?q={query}", auth)[1])["hits"] == []
        hits = json.loads(server.get(f"/api/search?q={query}&meaning=1", auth)[1])["hits"]
        assert [(h["name"], h["by"]) for h in hits] == [("bbaf2n.redacted.mp4", "meaning")]
        assert server.entries()[-1]["meaning"] is True


def test_cli_prints_url_first_and_refuses_bad_sources(outdir: Path, tmp_path: Path) -> None:
    proc = subprocess.Popen([*REDACT, "serve", str(outdir), "--access-log", str(tmp_path / "a.jsonl")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("http://127.0.0.1:") and "/?token=" in line
    finally:
        proc.terminate()
        proc.wait(10)
    for args, message in [([str(tmp_path / "none.sqlite")], "no transcript index"),
                          ([str(outdir), str(tmp_path / "none")], "not an output folder")]:
        done = subprocess.run([*REDACT, "serve", *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr


# ------------------------------------------------------------------------------------------------- the page
def test_search_page_in_a_browser(server: Server, spoken: dict, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    word = word_at(spoken["grid"], 1.0)
    lj_word = query_word(spoken["lj"]["segments"][0]["words"][0])
    shots = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768}, accept_downloads=True)
            page.goto(server.url)
            page.wait_for_selector("body[data-ready]")
            page.fill("#q", f"{query_word(word)} OR {lj_word}")
            page.press("#q", "Enter")
            expect(page.locator(".hit")).to_have_count(2)
            page.fill("#speaker", "S1")
            page.click("#go")
            expect(page.locator(".hit")).to_have_count(1)
            hit = page.locator(".hit").first
            expect(hit.locator(".speaker")).to_have_text("S1")
            expect(hit.locator("mark")).to_have_text(re.sub(r"^\W+|\W+$", "", word["word"]))  # "-Tuner": Tuner
            hit.click()
            wait_until(page, "document.getElementById('video').readyState >= 1", timeout=20)
            # the player was sought to a second before the word (it may have played on a little since)
            now = page.evaluate("() => { const v = document.getElementById('video'); v.pause(); return v.currentTime; }")
            assert word["start"] - 1.0 - 0.05 <= now <= word["start"] - 1.0 + 0.6, (now, word["start"])
            with page.expect_download() as download:
                page.click("#export")
            rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
            assert [(Path(r["file"]).name, float(r["start"]), r["speaker"]) for r in rows] == [
                ("bbaf2n.redacted.mp4", word["start"], "S1")]
            assert rows[0]["link"] == f"http://{server.host}/?play={spoken['grid']['sha256']}&t={word['start']:.3f}"
            shots.append(tmp_path / "search-1366x768.png")
            page.screenshot(path=str(shots[-1]))
            page.set_viewport_size({"width": 1920, "height": 1080})
            shots.append(tmp_path / "search-1920x1080.png")
            page.screenshot(path=str(shots[-1]))
        finally:
            browser.close()
    for shot in shots:
        shutil.copy(shot, f"/tmp/{shot.name}")
    events = [(e["event"], e.get("filters"), e["hits"] if "hits" in e else e.get("t")) for e in server.entries()[-4:]]
    assert events == [("search", {}, 2), ("search", {"speaker": "S1"}, 1), ("play", None, word["start"]),
                      ("export", {"speaker": "S1"}, 1)]
