"""A scripted reviewer does issue 27's standard task on the review page, in Debian's chromium: its actions counted,
its time measured, what it made checked.

    python -m benchmarks.review_task [--seconds 60] [--size 1280x720] [--views 1366x768,1920x1080]
        [--work /tmp/redact-review-task] [--out benchmarks/results/review_task.json]

The footage is the long benchmark's recording (benchmarks/long_bench.py: the leak benchmark's generated clips of
real annotated faces and plates filmed by a moving camera, with read speech), `--seconds` long, redacted at the
defaults. Its truth names every face and plate, so the task can be set in terms of objects, as a records officer
gets it ("release Officer A; release B while he speaks to the camera"), and the rows that are the object found as
the officer finds them by looking (`plan_task`):

1. un-redact every face of one named person (the face seen longest: every row that is mostly that face);
2. release two partial ranges of another person (a face with one row of 3 s or more: its second and fourth fifth),
   each marked by dragging along the row's lane on the timeline;
3. redact one missed plate (the plate with the longest run of frames no box covers, up to 3 s): go to its first
   frame, draw a region over it, follow it to its last frame;
4. approve, render, release (case and requester), from the page.

An action is one thing a person does: a click, a value typed (a frame number and Enter is one), a choice in a list
(not counted when what the list offers first is already right), a drag. Scrolling is not counted. The time is the
page's wall time from opening it to the release written, and within it the time spent waiting for the render and
the release (the machine's part; the script's own actions take no thinking time, a person's do). The goal (issue
27): under 25 actions and under 2 minutes of page time.

Checked afterwards: the decisions on disk are those the task asked for (the named person's tracks released whole,
the other's two ranges within a frame of what was dragged, one region, approved), the release package verifies
(`redact verify`), and the drawn region covers the missed plate (share of its true box under the region, frame by
frame, from the page's own boxes API). Each view size runs the task on its own copy of the run; screenshots of
each step go to `--work`/shots.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import numpy as np

from benchmarks.leak_bench import parse_size
from benchmarks.provenance import ROOT, write_result
from benchmarks.review_bench import joins_objects, row_objects
from benchmarks.synth import ClipTruth
from redact.detect import CLASS_NAMES
from redact.plan import Plan, plan_path
from redact.review.decisions import decisions_path
from redact.review.server import allowed_hosts, create_app

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
MOSTLY = 0.5  # a row is an object's when at least this share of its boxes match it
MISSED_MAX = 90  # frames: the missed plate's region is drawn over at most this many


# ---------------------------------------------------------------------------------------------- serving
class Server(NamedTuple):
    host: str  # 127.0.0.1:PORT
    token: str
    outdir: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}/?token={self.token}"


@contextmanager
def threaded(build: Callable[[int], object]) -> Iterator[tuple[int, object]]:
    """`build(port)`'s app on a free loopback port, served by uvicorn in a thread while the block runs (the review
    and the search page are tested this way)."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = build(port)
    uv = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for(lambda: uv.started, 20, "the server to start")
    try:
        yield port, app
    finally:
        uv.should_exit = True
        thread.join(10)


@contextmanager
def serving(outdir: Path, reviewer: str = "", bound: str = "127.0.0.1", releases: Path | None = None) -> Iterator[Server]:
    """The review app on `outdir` (`threaded`); it accepts the Host values of a server bound to `bound`."""
    build = lambda port: create_app(outdir, hosts=allowed_hosts(bound, port), reviewer=reviewer,  # noqa: E731
                                    releases=releases)
    with threaded(build) as (port, app):
        yield Server(f"127.0.0.1:{port}", app.state.token, outdir)


def wait_for(check: Callable[[], object], timeout: float, what: str) -> object:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# ---------------------------------------------------------------------------------------------- the task
class Missed(NamedTuple):
    obj: int
    first: int
    last: int
    box: list[float]  # the object's true box on `first` (xyxy, video pixels)
    uncovered: int  # frames of first..last that no plan box covered


class Task(NamedTuple):
    named: list[int]  # the rows of the person released whole
    partial: int  # the row of the person released over `ranges`
    ranges: list[tuple[int, int]]
    missed: Missed
    named_object: int
    partial_object: int


def merged_truth(parts: list[tuple[ClipTruth, int]], frames: int) -> ClipTruth:
    """One truth for clips laid end to end (each at its first frame), objects numbered apart (clip k's object i is
    1000 k + i); `photos` is left empty (each clip's canvas has its own)."""
    fields: dict[str, list[np.ndarray]] = {k: [] for k in ("frame", "obj", "box", "full", "size", "mats", "jerk")}
    for k, (t, first) in enumerate(parts):
        keep = t.frame < frames - first
        fields["frame"].append(t.frame[keep] + first)
        fields["obj"].append(t.obj[keep] + 1000 * k)
        for name in ("box", "full", "size"):
            fields[name].append(getattr(t, name)[keep])
        fields["mats"].append(t.mats[: frames - first])
        fields["jerk"].append(t.jerk[: frames - first])
    return ClipTruth(**{k: np.concatenate(v) for k, v in fields.items()}, frames=frames,
                     photos=np.zeros((0, 4), np.float32))


def cover(truth_box: np.ndarray, boxes: np.ndarray) -> float:
    """The largest share of `truth_box` that one of `boxes` (xyxy) covers (0 without boxes)."""
    if not len(boxes):
        return 0.0
    ix = np.clip(np.minimum(boxes[:, 2], truth_box[2]) - np.maximum(boxes[:, 0], truth_box[0]), 0, None)
    iy = np.clip(np.minimum(boxes[:, 3], truth_box[3]) - np.maximum(boxes[:, 1], truth_box[1]), 0, None)
    area = max(1e-6, (truth_box[2] - truth_box[0]) * (truth_box[3] - truth_box[1]))
    return float((ix * iy / area).max())


def plan_task(plan: Plan, truth: ClipTruth, classes: dict[int, str], missed: str = "plate") -> Task:
    """The task in rows and frames, found from the truth as an officer finds it by looking. `classes`: object id ->
    "face" or "plate"; `missed`: the class of the missed object to draw a region over."""
    rows = {g.id: g for g in plan.groups()}
    owner: dict[int, int] = {}  # row -> the object it mostly is
    for row in rows.values():
        matched, total = row_objects(plan, row, truth)
        if matched and CLASS_NAMES[row.cls] == classes[matched.most_common(1)[0][0]]:
            obj, n = matched.most_common(1)[0]
            if n >= MOSTLY * total:
                owner[row.id] = obj
    seen = Counter(int(o) for o in truth.obj)
    faces = [o for o, _ in seen.most_common() if classes[o] == "face" and o in owner.values()]
    if len(faces) < 2:
        raise SystemExit("the footage needs two faces with rows of their own")
    named = faces[0]
    partial_rows = [(rows[r].last - rows[r].first, r, o) for r, o in owner.items()
                    if o != named and classes[o] == "face" and list(owner.values()).count(o) == 1]
    if not partial_rows:
        raise SystemExit("no second person with one row of their own")
    _, partial, partial_obj = max(partial_rows)
    g = rows[partial]
    n = g.last - g.first
    ranges = [(g.first + round(n * a), g.first + round(n * b)) for a, b in ((0.2, 0.4), (0.6, 0.8))]
    others = {o: c for o, c in classes.items() if o not in (named, partial_obj)}  # the missed one is a third object
    return Task(sorted(r for r, o in owner.items() if o == named), partial, ranges,
                missed_object(plan, truth, others, missed), named, partial_obj)


def missed_object(plan: Plan, truth: ClipTruth, classes: dict[int, str], cls: str) -> Missed:
    """The object of class `cls` (10 px or more, at least 80% in view) with the longest run of frames no box of the
    plan covers; where every one is covered, the smallest one's first frames (the officer draws a region over it
    anyway)."""
    boxes = plan.boxes(0, truth.frames - 1)
    best: tuple[int, int, int, int] | None = None  # run length, object, first, last
    plates = [o for o in np.unique(truth.obj) if classes.get(int(o)) == cls]
    for obj in plates:
        full, box = truth.full, truth.box
        in_view = np.prod(box[:, 2:] - box[:, :2], 1) >= 0.8 * np.prod(full[:, 2:] - full[:, :2], 1)
        rows = np.flatnonzero((truth.obj == obj) & (truth.size >= 10) & in_view)
        run_start, prev = None, None
        for i in rows:
            f = int(truth.frame[i])
            hit = cover(truth.box[i], boxes.at(f).xyxy) >= 0.8
            if hit or prev is None or f != prev + 1:
                if run_start is not None and (best is None or prev - run_start + 1 > best[0]):
                    best = (prev - run_start + 1, int(obj), run_start, prev)
                run_start = None
            if not hit and run_start is None:
                run_start = f
            prev = f
        if run_start is not None and (best is None or prev - run_start + 1 > best[0]):
            best = (prev - run_start + 1, int(obj), run_start, prev)
    if best is None:
        obj = min(plates, key=lambda o: truth.size[truth.obj == o].min())
        frames = truth.frame[truth.obj == obj]
        best = (0, int(obj), int(frames.min()), int(frames.min()) + 30)
    uncovered, obj, first, last = best
    last = min(last, first + MISSED_MAX - 1)
    i = np.flatnonzero((truth.obj == obj) & (truth.frame == first))[0]
    return Missed(obj, first, last, [round(float(v), 1) for v in truth.box[i]], min(uncovered, last - first + 1))


# ---------------------------------------------------------------------------------------------- the reviewer
class Reviewer:
    """A page driven as a person drives it: every action logged with its time, screenshots on the way."""

    def __init__(self, page, shots: Path | None = None):
        self.page, self.shots, self.actions = page, shots, []
        self.t0 = time.monotonic()
        self.waited = 0.0
        self.frames_a_pixel = 0.0  # of the timeline's lanes, where the ranges were dragged

    def _did(self, what: str) -> None:
        self.actions.append({"t": round(time.monotonic() - self.t0, 2), "action": what})

    def open(self, url: str) -> None:
        self.page.goto(url)
        self._did("open the page")

    def click(self, selector: str, what: str) -> None:
        self.page.locator(selector).click()
        self._did(what)

    def type(self, selector: str, value: str, what: str, enter: bool = False) -> None:
        self.page.fill(selector, value)
        if enter:
            self.page.press(selector, "Enter")
        self._did(what)

    def choose(self, selector: str, value: str, what: str) -> None:
        if self.page.locator(selector).input_value() != value:
            self.page.select_option(selector, value)
            self._did(what)

    def drag(self, start: tuple[float, float], end: tuple[float, float], what: str) -> None:
        mouse = self.page.mouse
        mouse.move(*start)
        mouse.down()
        mouse.move(*end, steps=8)
        mouse.up()
        self._did(what)

    def save(self, what: str = "save") -> None:
        """Save the open dialog's decision; wait until the page has reloaded the decisions it made."""
        head = self.page.evaluate("S.head")
        self.click("#action-ok", what)
        wait_for(lambda: self.page.evaluate("S.head") != head, 30, "the decision saved")

    def wait(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        """A wait for the machine (render, release): its time is kept apart."""
        t = time.monotonic()
        wait_for(check, timeout, what)
        self.waited += time.monotonic() - t

    def shoot(self, name: str) -> None:
        if self.shots:
            self.shots.mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(self.shots / f"{name}.png"))


def lane_x(page, row: int, frame: int) -> tuple[float, float]:
    """Where on screen a row's lane shows `frame` (the middle of the frame's share of the lane)."""
    lane = page.locator(f'#lanes .lane[data-group="{row}"]')
    lane.evaluate("e => e.scrollIntoView({block: 'center'})")  # clear of the message at the window's foot
    left, width = page.evaluate("[lanesBox().left, lanesBox().width]")
    frames = page.evaluate("S.info.video.frames")
    y = lane.bounding_box()["y"] + 8
    return left + (frame + 0.5) / frames * width, y


def on_frame(page, x: float, y: float) -> tuple[float, float]:
    """Where on screen video pixel (x, y) is shown."""
    page.locator("#overlay").scroll_into_view_if_needed()
    box = page.locator("#overlay").bounding_box()
    width, height = page.evaluate("[S.info.video.width, S.info.video.height]")
    return box["x"] + x * box["width"] / width, box["y"] + y * box["height"] / height


def do_task(page, server: Server, task: Task, *, case: str, requester: str, shots: Path | None = None,
            release_reason: str = "not-exempt", redact_reason: str = "b6", timeout: float = 600) -> Reviewer:
    """The standard task on an opened page (its reviewer named, as `redact review --reviewer` does)."""
    r = Reviewer(page, shots)
    r.open(server.url)
    page.locator(".group").first.wait_for()
    r.shoot("0-opened")

    # 1. every face of the named person
    if len(task.named) == 1:
        r.click(f'.group[data-group="{task.named[0]}"] .unredact', "un-redact the named person's row")
    else:
        for row in task.named:
            r.click(f'.group[data-group="{row}"] .check', f"select row {row}")
        r.click("#bulk-unredact", "un-redact the selected rows")
    r.choose("#action-reason", release_reason, "choose the reason")
    r.shoot("1-named")
    r.save()

    # 2. two ranges of the other person, dragged on its lane
    r.frames_a_pixel = page.evaluate("S.info.video.frames / lanesBox().width")
    for k, (a, b) in enumerate(task.ranges):
        r.drag(lane_x(page, task.partial, a), lane_x(page, task.partial, b), f"drag frames {a}-{b} on the row's lane")
        r.choose("#action-reason", release_reason, "choose the reason")
        r.shoot(f"2-range-{k + 1}")
        r.save()

    # 3. the missed plate: its first frame, a region drawn over it, followed to its last frame
    m = task.missed
    r.type("#frame-no", str(m.first), "type the frame number", enter=True)
    wait_for(lambda: page.evaluate(f"S.shown === {m.first}"), 20, "the frame")
    r.click("#draw", "draw region")
    x0, y0, x1, y1 = m.box
    pad = 0.25 * max(x1 - x0, y1 - y0)  # a person draws with a margin
    r.drag(on_frame(page, x0 - pad, y0 - pad), on_frame(page, x1 + pad, y1 + pad), "drag a box over the plate")
    r.type("#action-last", str(m.last), "type the last frame")
    r.click("#action-follow", "follow what I drew")
    r.choose("#action-reason", redact_reason, "choose the reason")
    r.shoot("3-region")
    r.save()

    # 4. approve, render, release
    r.click("#approve", "approve")
    r.save("confirm the approval")
    r.click("#render", "render")
    r.wait(lambda: page.locator('#render-state[data-state="done"]').count() == 1, timeout, "the render")
    r.shoot("4-rendered")
    r.click("#release", "release")
    r.type("#action-case", case, "type the case id")
    r.type("#action-requester", requester, "type the requester")
    r.shoot("5-release")
    r.click("#action-ok", "release")
    r.wait(lambda: "Released" in (page.locator("#message").text_content() or "")
           or page.locator("#action-error").is_visible(), timeout, "the release")
    r.shoot("6-released")
    return r


# ---------------------------------------------------------------------------------------------- checks
def check(server: Server, stem: str, task: Task, truth: ClipTruth, releases: Path) -> dict:
    """What the task left on disk, against what it asked for (the ranges dragged on the timeline: how many frames
    off, against the lane's frames a pixel)."""
    from redact.review.verify import verify_package

    state = json.loads(decisions_path(server.outdir, stem).read_text(encoding="utf-8"))
    with Plan(plan_path(server.outdir, stem)) as plan:
        tracks = {g.id: g.tracks for g in plan.groups()}
    named = [state["tracks"].get(str(t)) for row in task.named for t in tracks[row]]
    partial = [state["tracks"].get(str(t)) for t in tracks[task.partial]]
    ranges = partial[0].get("frames") if partial and partial[0] else None
    off_by = None
    if ranges and len(ranges) == 2:
        off_by = max(max(abs(a - x), abs(b - y)) for (a, b), (x, y) in zip(ranges, task.ranges, strict=True))
    packages = sorted(releases.glob("*.zip"))
    verdict = verify_package(packages[-1], allow_unsigned=True) if packages else None
    return {
        "named_released_whole": all(d is not None and d["redact"] is False and "frames" not in d for d in named),
        "partial_ranges": ranges,
        "partial_ranges_off_by": off_by,
        "regions": len(state["regions"]),
        "approved": state.get("approved") is not None,
        "package": packages[-1].name if packages else None,
        "package_verified": bool(verdict and verdict.ok),
        "package_failures": verdict.failed if verdict else None,
        "missed_cover": region_cover(server, stem, task.missed, truth),
    }


def region_cover(server: Server, stem: str, m: Missed, truth: ClipTruth) -> dict:
    """How much of the missed plate's true box the drawn region covers on each frame it was drawn for (the
    page's own boxes: what the render burns in)."""
    import http.client

    conn = http.client.HTTPConnection(server.host, timeout=60)
    conn.request("GET", f"/api/v/{stem}/boxes?first={m.first}&last={m.last}",
                 headers={"Host": server.host, "X-Redact-Token": server.token})
    frames = json.loads(conn.getresponse().read())["frames"]
    conn.close()
    shares = []
    for f in range(m.first, m.last + 1):
        i = np.flatnonzero((truth.obj == m.obj) & (truth.frame == f))
        if not len(i):
            continue
        regions = np.array([b["b"] for b in frames.get(str(f), []) if "region" in b], np.float32).reshape(-1, 4)
        shares.append(cover(truth.box[i[0]], regions))
    shares_a = np.array(shares)
    return {"frames": len(shares), "min": round(float(shares_a.min()), 3) if len(shares) else None,
            "frames_fully_covered": int((shares_a >= 0.999).sum()), "frames_90": int((shares_a >= 0.9).sum())}


# ---------------------------------------------------------------------------------------------- main
def footage(work: Path, seconds: float, size: tuple[int, int]) -> tuple[Path, ClipTruth, dict[int, str]]:
    """The recording, its truth, and each object's class."""
    from benchmarks.long_bench import recording

    path, layout = recording(work, seconds / 60, size)
    frames = int(round(seconds * 30))
    parts = [(clip.truth, first) for clip, first in layout]
    truth = merged_truth(parts, frames)
    classes = {1000 * k + int(o): ("face" if clip.spec.kind == "faces" else "plate")
               for k, (clip, _) in enumerate(layout) for o in np.unique(clip.truth.obj)}
    return path, truth, classes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--size", type=parse_size, default=(1280, 720))
    ap.add_argument("--views", default="1366x768,1920x1080")
    ap.add_argument("--work", type=Path, default=Path("/tmp/redact-review-task"))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/review_task.json")
    args = ap.parse_args()

    from playwright.sync_api import sync_playwright

    from redact.pipeline import Redactor

    args.work.mkdir(parents=True, exist_ok=True)
    video, truth, classes = footage(args.work, args.seconds, args.size)
    stem = "footage"
    run = args.work / "run"
    if not plan_path(run, stem).exists():
        t = time.monotonic()
        Redactor().run(video, run, stem=stem)
        print(f"redacted in {time.monotonic() - t:.0f} s")
    with Plan(plan_path(run, stem)) as plan:
        task = plan_task(plan, truth, classes)
        groups = plan.groups()
        rows = len(groups)
        joined = [g for g in groups if g.looked]  # rows joined by appearance, and those that join two objects
        looked = {"rows": len(joined), "joining_objects": sum(joins_objects(row_objects(plan, g, truth)[0]) for g in joined)}
    print(f"rows joined by look: {looked}")
    print(f"{rows} rows; task: {task}")
    results = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for view in args.views.split(","):
            w, h = parse_size(view)
            copy = args.work / f"review-{view}"
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(run, copy)
            releases = args.work / f"releases-{view}"
            shutil.rmtree(releases, ignore_errors=True)
            context = browser.new_context(viewport={"width": w, "height": h})
            page = context.new_page()
            page.set_default_timeout(30_000)
            errors: list[str] = []
            page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
            with serving(copy, reviewer="Records Officer", releases=releases) as server:
                t = time.monotonic()
                r = do_task(page, server, task, case="PRR-2026-0142", requester="A. Requester",
                            shots=args.work / "shots" / view)
                wall = time.monotonic() - t
                outcome = check(server, stem, task, truth, releases)
            context.close()
            result = {"view": view, "actions": len(r.actions), "frames_a_pixel": round(r.frames_a_pixel, 2),
                      "page_s": round(wall, 1),
                      "machine_wait_s": round(r.waited, 1), "script_s": round(wall - r.waited, 1),
                      "page_errors": errors, "log": r.actions, **outcome}
            print(json.dumps({k: v for k, v in result.items() if k != "log"}))
            results.append(result)
        browser.close()
    write_result(args.out, {"seconds": args.seconds, "size": list(args.size), "rows": rows, "joined_by_look": looked,
                            "task": {"named_rows": task.named, "partial_row": task.partial, "ranges": task.ranges,
                                     "missed": task.missed._asdict()},
                            "runs": results}, __file__)


if __name__ == "__main__":
    main()
