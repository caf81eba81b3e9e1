"""The README's measured figures, made from the result files: nobody types a benchmark figure by hand.

    python -m benchmarks.readme_figures          # rewrite README.md's generated blocks from benchmarks/results/*.json
    python -m benchmarks.readme_figures --check  # exit 1, naming the blocks, if README.md differs from the results

A generated block in README.md is `<!-- figures: NAME -->` ... `<!-- /figures -->` (a table on lines of its own,
or a few words inline); NAME is a key of `BLOCKS`, whose function makes its text from the result files it names
(each table says which file, and the file says which code and command made it: `benchmarks/provenance.py`).
`tests/test_readme.py` fails when a block differs from what the files give, so a re-run benchmark is published
by running this script and committing both.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
BLOCK = re.compile(r"<!-- figures: (\S+) -->(.*?)<!-- /figures -->", re.S)
FACES, PLATES = "faces >= 20 px", "plates h >= 10 px"
JERKS = ("burst", "pan", "drop")


@cache
def load(name: str) -> dict:
    return json.loads((RESULTS / f"{name}.json").read_text(encoding="utf-8"))


def pct(rate: float, digits: int = 2) -> str:
    return f"{100 * rate:.{digits}f}%"


def source(name: str) -> str:
    """`name.json` and the day its run started (leak bench files) or its code's commit (stamped files)."""
    data = load(name)
    when = data.get("engine", {}).get("started", "")[:10]
    if not when and data.get("code", {}).get("commit"):
        when = f"code {data['code']['commit'][:7]}"
    return f"`{name}.json`" + (f", {when}" if when else "")


def leaked(bucket: dict) -> str:
    return f"{pct(bucket['leak'])} ({bucket['leaked']}/{bucket['box_frames']})"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return "\n\n" + "\n".join([*lines, *("| " + " | ".join(r) + " |" for r in rows)]) + "\n\n"  # blank lines around


# ------------------------------------------------------------------------------------------------ leak bench
def shared(name: str) -> str | None:
    """Why a run's timings are not shown, if they are not: the machine was busy with other work (a load average above
    twice its CPUs at the start or the end; a run alone keeps it near the CPU count)."""
    machine = load(name)["machine"]
    worst = max(machine["load_avg_start"][0], machine["load_avg_end"][0])
    return f"not timed: load average {worst:.1f} on {machine['cpus']} CPUs" if worst > 2 * machine["cpus"] else None


def fps(name: str) -> str:
    """Frames/s on the face clips (model load included), with deface's in the same run when it ran."""
    if shared(name):
        return shared(name)
    tools = load(name)["tools"]
    own = tools["redact"]["faces"]["speed"]["fps"]
    deface = tools.get("deface", {}).get("faces", {}).get("speed", {}).get("fps")
    return f"{own:.2f}" + (f" against {deface:.2f} (**{own / deface:.2f}x**)" if deface else " (deface not run)")


def runs_table(rows: list[tuple[str, str]]) -> str:
    """One row per leak-bench run: its settings (as words), speed, leaks and background."""
    out = []
    for label, name in rows:
        tools = load(name)["tools"]["redact"]
        faces, plates = tools["faces"], tools.get("plates")
        out.append([label, source(name), fps(name), leaked(faces["buckets"][FACES]),
                    leaked(plates["buckets"][PLATES]) if plates else "-",
                    pct(faces["background"]) + (f" / {pct(plates['background'])}" if plates else "")])
    return table(["settings", "result file", "frames/s, face clips (deface, same run)", "faces >= 20 px leaked",
                  "plates >= 10 px leaked", "background blanked, face / plate clips"], out)


def leak_table(name: str) -> str:
    """Every measure of one leak-bench run, redact against deface."""
    tools = load(name)["tools"]
    red, dfc = tools["redact"], tools.get("deface", {})

    def jerks(summary: dict, kind: str, key: str) -> str:
        j = summary["jerk_frames"]
        return f"{leaked(j[f'jerk frames, {key}'])}; {' / '.join(pct(j[f'{e} frames, {key}']['leak']) for e in JERKS)}"

    def looks(summary: dict) -> str:
        b = summary["blur_looks_like_input"]
        return f"{pct(b[FACES]['rate'])}; jerk frames {pct(b[f'jerk frames, {FACES}']['rate'])}"

    def background(summary: dict) -> str:
        return f"{pct(summary['background'])} ({pct(summary['background_texture_only'])})"

    rows = []
    for measure, make, kind in [
        ("faces >= 20 px leaked, all frames", lambda s: leaked(s["buckets"][FACES]), "faces"),
        ("faces < 20 px leaked", lambda s: leaked(s["buckets"]["faces < 20 px"]), "faces"),
        ("faces >= 20 px leaked, jerk frames; burst / pan / drop", lambda s: jerks(s, "faces", FACES), "faces"),
        ("faces >= 20 px that still look like the input in blur mode (mean luma change < 6)", looks, "faces"),
        ("background blanked, face clips (texture only)", background, "faces"),
        ("frames/s, face clips (model load included)", lambda s: shared(name) or f"{s['speed']['fps']:.2f}", "faces"),
        ("plates >= 10 px leaked, all frames", lambda s: leaked(s["buckets"][PLATES]), "plates"),
        ("plates >= 10 px leaked, jerk frames; burst / pan / drop", lambda s: jerks(s, "plates", PLATES), "plates"),
        ("background blanked, plate clips (texture only)", background, "plates"),
    ]:
        if kind in red:
            rows.append([measure, make(red[kind]), make(dfc[kind]) if kind in dfc else "-"])
    return f"\n\n{source(name)}:" + table(["measure", "redact", "deface 1.5.0, same run"], rows)


LEVERS = [  # the scheduling levers, each run at the code of its day: `result file` names it
    ("OpenVINO bf16, every detector on every 2nd frame", "leak_face_every2"),
    ("+ faces on every 3rd frame (`--face-every 3`)", "leak_plate_turns_off"),
    ("`--plate-turns on` instead (the plate models always take turns)", "leak_plate_turns"),
    ("`--plate-turns on --detect-every 3`, faces on every 3rd frame with the rest", "leak_plate_turns_every3"),
    ("the defaults (idle plate turns, face looks at 1.0x in turns, the padding and background rules)", "leak"),
]
LEVERS_1080P = [
    ("every detector on every 2nd frame", "leak_1080p_face_every2"),
    ("+ faces on every 3rd frame, no plate turns", "leak_1080p_plate_turns_off"),
    ("the defaults", "leak_1080p"),
]


# ------------------------------------------------------------------------------------------------ the others
RUNTIMES = ["onnxruntime fp32", "openvino f32", "openvino bf16", "onnxruntime int8", "openvino int8",
            "onnxruntime int8 float head", "openvino int8 float head"]


def runtime_table() -> str:
    rows = []
    for model, runs in load("runtime")["models"].items():
        cells = [f"{runs[r]['ms_per_720p_frame']:.0f} ms, {runs[r]['recall']:.3f}" + (
            f", precision {runs[r]['precision']:.2f}" if runs[r]["recall"] and runs[r]["precision"] < 0.5 else "")
            if r in runs else "-" for r in RUNTIMES]
        rows.append([model, *cells])
    return f"\n\n{source('runtime')}, ms per 720p frame and recall:" + table(["detector", *RUNTIMES], rows)


def runtime_clips() -> str:
    e2e = load("runtime")["centerface_end_to_end"]
    return (f"{', '.join(map(str, e2e['fps']['int8']))} frames/s in int8 against "
            f"{', '.join(map(str, e2e['fps']['default']))} (medians {e2e['ratio']:.2f}x)")


def render_table() -> str:
    run, hour = load("render")["run_vs_render"], load("render")["hour_plan"]
    return f"\n\n{source('render')}:" + table(["measure", "figure"], [
        [f"`redact run` against `redact render` (no decisions), demo street clip, {run['clip'].split(', ')[-1]}, "
         f"{run['frames']} frames, each a process", f"{run['run_s']} s against {run['render_s']} s: render "
                                                   f"**{run['render_speedup']}x** faster"],
        [f"plan of one hour ({hour['frames']:,} frames), {hour['tracks']:,} tracks, {hour['boxes']:,} boxes",
         f"{hour['plan_mb']} MB, written in {hour['write_s']} s"],
        [f"boxes for a 10 s window of that hour ({hour['windows']} random windows)",
         f"p50 {hour['p50_ms']} ms, p95 {hour['p95_ms']} ms"],
        [f"review page ready on it in chromium ({hour['rows_shown']:,} rows listed, first frame shown), fresh server",
         f"{hour['page_ready_s']} s"],
    ])


REID = [("**default blur** (8x8 cell means, Gaussian of box/3)", "redact default (blur: 8x8 low-pass, sigma box/3)"),
        ("blur before issue 14 (6-cell mosaic, quarter-box Gaussian)", "old default: mosaic 6 + quarter-box Gaussian"),
        ("deface 1.5.0 blur", "deface 1.5.0 blur"),
        ("fill (black)", "fill (black)"),
        ("control: another person's original face", "impostor control (another person's original face, nearest size)")]


def reid_table() -> str:
    rows = []
    for label, key in REID:
        m = load("reid")["methods"][key]
        own = m.get("nearer_own_than_impostor", {}).get(">=40 px", {}).get("rate")
        ssim = m.get("ssim_resemblance", {}).get(">=20 px", {}).get("rate")
        change = m.get("mean_abs_diff", {}).get("smeared 21-30 px faces")
        rows.append([label, pct(m["reid"][">=40 px"]["rate"], 1), pct(own, 1) if own is not None else "-",
                     pct(ssim, 1) if ssim is not None else "-", f"{change:.1f}" if change is not None else "-"])
    return f"\n\n{source('reid')}:" + table(
        ["redaction", "matched (distance < 0.6), faces >= 40 px", "nearer its own face than an impostor's (chance 50%)",
         "looks like the original at 32x32 (SSIM >= 0.5), faces >= 20 px",
         "change on smeared 21-30 px faces (grey levels)"], rows)


def diarization_table() -> str:
    rows = []
    for name in ("diarization", "diarization_heldout"):
        summary = load(name)["summary"]
        for voices in range(1, 5):
            cells = [summary[f"{voices} speaker{'s' if voices > 1 else ''}, {band}"] for band in ("wideband", "phone")]
            rows.append([source(name), str(voices), str(cells[0]["conversations"]),
                         " / ".join(pct(c["words_right"], 1) for c in cells),
                         " / ".join(f"{c['right_count']} of {c['conversations']}" for c in cells)])
    return table(["result file", "voices", "recordings", "words given the right speaker, wideband / 8 kHz phone",
                  "speaker count right, wideband / phone"], rows)


def diarization_cost() -> str:
    return f"{pct(load('diarization')['diarize_over_transcribe'], 0)}"


def batch_jobs() -> str:
    runs = {r["jobs"]: r for r in load("batch")["runs"]}
    return (f"{runs[2]['frames_per_s'] / runs[1]['frames_per_s']:.2f}x the frames/s of `--jobs 1`, "
            f"`batch.json`; each worker peaked at {runs[1]['worker_peak_rss_mb'] / 1024:.1f} GB with the speech model")


def review_rows() -> str:
    """Rows against objects, per class (`benchmarks/review_bench.py`)."""
    t = load("review_rows")["total"]
    f, p = t["faces"], t["plates"]
    return (f"faces {f['rows']} rows for {f['objects']} objects ({f['rows_per_object']:.2f} rows an object; issue "
            f"27 aims at 1.3), {f['objects_split']} objects split over several rows, {f['rows_joining_objects']} rows "
            f"joining two objects, {f['rows_not_objects']} rows that are not objects (a false detection, or an object "
            f"at the frame's edge that the truth drops when less than half of it is in view); plates {p['rows']} rows "
            f"for {p['objects']} objects ({p['rows_per_object']:.2f}), {p['objects_split']} split, "
            f"{p['rows_joining_objects']} joined, {p['rows_not_objects']} not objects. These clips are crowded canvases "
            f"of photos ({f['rows_per_minute']:.0f} face rows a minute): the figure to compare is rows per object"
            + vtest_rows())


def vtest_rows() -> str:
    v = load("review_rows").get("vtest")
    if not v:
        return ""
    return (f". On OpenCV's vtest.avi (80 s of pedestrians, 768x576, `--vtest`): {v['rows']} rows of {v['tracks']} "
            f"tracks ({v['rows_by_class'].get('face', 0)} faces, {v['rows_by_class'].get('plate', 0)} plates), "
            f"{v['rows_per_minute']:.0f} a minute, {v['rows_to_look_at']} marked needs a look"
            f" ({v['rows_joined_by_look']} of them joined by look)")


def review_triage() -> str:
    """Rows the page marks "needs a look", and the non-object rows among them and among the rest."""
    t = load("review_rows")["total"]
    f, p = t["faces"], t["plates"]
    confident = f["rows"] + p["rows"] - f["rows_to_look_at"] - p["rows_to_look_at"]
    missed = (f["rows_not_objects"] - f["rows_not_objects_to_look_at"] + p["rows_not_objects"]
              - p["rows_not_objects_to_look_at"])
    return (f"{f['rows_to_look_at']} of the {f['rows']} face rows, among them {f['rows_not_objects_to_look_at']} of the "
            f"{f['rows_not_objects']} that are not objects, and {p['rows_to_look_at']} of the {p['rows']} plate rows, "
            f"among them {p['rows_not_objects_to_look_at']} of the {p['rows_not_objects']}; the {confident} confident "
            f"rows, which **Accept confident…** keeps redacted in one step with one reason, hold the other {missed} "
            f"non-objects")


def review_task() -> str:
    """The scripted reviewer's standard task (`benchmarks/review_task.py`)."""
    r = load("review_task")
    runs = r["runs"]
    views = "; ".join(
        f"at {x['view']}: {x['actions']} actions, {x['page_s']:.0f} s on the page of which {x['machine_wait_s']:.0f} s "
        f"waiting for the render and the release, ranges dragged within {x['partial_ranges_off_by']} frames of those "
        f"meant ({x['frames_a_pixel']:.1f} frames a pixel), the package verified: {'yes' if x['package_verified'] else 'NO'}, "
        f"the missed plate under the region on {x['missed_cover']['frames_90']} of {x['missed_cover']['frames']} frames "
        f"(90% of its box or more; {x['missed_cover']['min']:.0%} at least)" for x in runs)
    looked = r["joined_by_look"]
    return (f"{r['seconds']:.0f} s of {r['size'][0]}x{r['size'][1]} footage, {r['rows']} rows ({looked['rows']} "
            f"joined by look, {looked['joining_objects']} of them joining two objects); the named person is "
            f"{len(r['task']['named_rows'])} row{'s' if len(r['task']['named_rows']) > 1 else ''} ({source('review_task')}): "
            + views)


def chain_rules() -> str:
    """Rows on vtest under wider chaining rules (`benchmarks/chain_bench.py`)."""
    parts = []
    for name in ("chain", "chain_wide"):
        r = load(name)
        rules = r["rules"]
        sizes = "box size" if r["spread"] == 1 else "box sizes"
        parts.append(f"a reach growing {r['spread']:g} {sizes} a second of gap: {rules['spread']['rows']} rows "
                     f"({rules['spread']['links_beyond_reach']} links beyond today's reach), with the clothes' colours "
                     f"alike (distance < {r['gate']:g}) {rules['spread+look']['rows']} "
                     f"({rules['spread+look']['links_beyond_reach']} links; {source(name)})")
    return f"today's rule {load('chain')['rules']['today']['rows']} rows; " + "; ".join(parts)


def chain_embed() -> str:
    """Rows on vtest with the wider reach gated by appearance features (`benchmarks/chain_bench.py --embed`)."""
    r, strict = load("chain_embed"), load("chain_embed_079")
    gates = [(k.split("@")[1], v) for x in (r, strict) for k, v in x["rules"].items() if k.startswith("spread+embed@")]
    median = {k: v["percentiles_5_25_50_75"][2] for k, v in r["similarity"].items()}
    return (f"a reach growing {r['spread']:g} box size a second, kept where the bodies are alike: "
            + ", ".join(f"similarity >= {g}: {v['rows']} rows ({v['links_beyond_reach']} links)" for g, v in gates)
            + f"; the median similarity of the links within today's reach {median['within_reach']:.2f}, "
            f"of those the wider reach adds {median['added']:.2f} ({source('chain_embed')}, {source('chain_embed_079')})")


def long_segments() -> str:
    """A long recording in one pass against segments (`benchmarks/long_bench.py`)."""
    r = load("long")
    rec, runs, cmp, resume = r["recording"], r["runs"], r["split_vs_single"], r["resume"]
    w, h = rec["size"]

    def leak(which: str, kind: str, bucket: str) -> str:
        b = cmp[which][kind]["buckets"][bucket]
        return leaked(b) if b["box_frames"] else "none (none in view)"

    def peak(run: dict) -> str:
        return ", ".join(f"{max(m['peak_mb_per_minute']) / 1024:.1f}" for m in run["memory"].values()
                         if max(m["peak_mb_per_minute"]) > 500)

    rows = [[name, f"{runs[key]['fps']:.2f}", peak(runs[key])] for name, key in (
        ("one pass (`--segment-minutes 0`)", "single"), ("segments, one process", "split"),
        (f"segments, `--jobs {rec['jobs']}`", "split_jobs"), ("`batch --backend ray`, 1 segment at a time", "ray_1"),
        (f"`batch --backend ray`, {rec['cpus']} at a time", "ray_n"))]
    crossing = cmp["tracks_across_cuts"]
    return (f"A {rec['minutes']:g}-minute {w}x{h} recording ({rec['frames']} frames) in "
            f"{runs['split']['segments']['count']} segments of {rec['segment_minutes']:g} min, on this "
            f"{rec['cpus']}-core machine ({source('long')}):"
            + table(["run", "frames/s", "peak GB per process"], rows)
            + f"- The segmented output has the single pass's {cmp['frames'][1]} frames and "
            f"{'the same' if cmp['same_timestamps'] else '**not** the same'} timestamps; faces >= 20 px leaked "
            f"{leak('leaks_split', 'faces', FACES)} against {leak('leaks_single', 'faces', FACES)} in one pass, "
            f"plates >= 10 px {leak('leaks_split', 'plates', PLATES)} against {leak('leaks_single', 'plates', PLATES)}"
            f" (the leak benchmark's measure on the recording's truth); {crossing['one_id']} of the "
            f"{crossing['crossing']} tracks that the single pass carries across a cut keep one id across it.\n"
            f"- Killed (SIGKILL) with {resume['finished_when_killed']} of {resume['segments']} segments finished, "
            f"the rerun reused {resume['reused']} and its frames "
            f"{'equal' if resume['frames_equal_uninterrupted'] else '**differ from**'} the uninterrupted run's; "
            f"the `--jobs` and Ray outputs' frames "
            f"{'equal' if resume['jobs_frames_equal'] and all(resume['ray_frames_equal']) else '**differ from**'} "
            f"it too.\n"
            f"- Workers against one: `--jobs {rec['jobs']}` {r['speedup_jobs']:.2f}x, Ray {r['speedup_ray']:.2f}x.\n"
            f"- Memory: the largest growth of any process's peak from the second minute of its run to the last full "
            f"minute is {growth(runs)}.\n")


def growth(runs: dict) -> str:
    """The largest `memory.growth` (`long_bench.memory`) of any process of any run, with where it was."""
    found = [(m["growth"], name, proc) for name, run in runs.items() for proc, m in run["memory"].items()
             if m["growth"] is not None and max(m["peak_mb_per_minute"]) > 500]
    if not found:
        return "not measured (no run lasted three minutes)"
    g, name, proc = max(found)
    return f"{pct(g, 1)} ({name}, {proc}; {len(found)} processes measured)"


BLOCKS: dict[str, Callable[[], str]] = {
    "settings": lambda: runs_table([
        ("defaults", "leak"),
        ("`--face-scale 1 --plate-imgsz 640 --detect-every 3 --plate-model plate-mahdi`", "leak_fast")]),
    "leak": lambda: leak_table("leak"),
    "leak_heldout": lambda: leak_table("leak_heldout"),
    "leak_1080p": lambda: leak_table("leak_1080p") + runs_table(LEVERS_1080P),
    "levers": lambda: runs_table(LEVERS),
    "runtime": runtime_table,
    "runtime_clips": runtime_clips,
    "render": render_table,
    "reid": reid_table,
    "diarization": diarization_table,
    "diarization_cost": diarization_cost,
    "batch_jobs": batch_jobs,
    "review_rows": review_rows,
    "review_triage": review_triage,
    "long_segments": long_segments,
    "review_task": review_task,
    "chain_rules": chain_rules,
    "chain_embed": chain_embed,
}


def made(name: str) -> str:
    """Block `name`'s text, at most one blank line in a row (tables are set apart by blank lines, and the markdown
    of a table right after an HTML comment line is not a table everywhere)."""
    if name not in BLOCKS:
        raise KeyError(f"README block '{name}' is not one of benchmarks/readme_figures.py's BLOCKS")
    return re.sub(r"\n{3,}", "\n\n", BLOCKS[name]())


def regenerate(readme: str) -> str:
    """`readme` with every generated block made again from the result files; an unknown block name is an error."""
    return BLOCK.sub(lambda m: f"<!-- figures: {m.group(1)} -->{made(m.group(1))}<!-- /figures -->", readme)


def stale(readme: str) -> list[str]:
    """Names of the blocks whose text differs from what the result files give."""
    return [m.group(1) for m in BLOCK.finditer(readme) if m.group(2) != made(m.group(1))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only say which blocks differ (exit 1 if any)")
    args = ap.parse_args(argv)
    text = README.read_text(encoding="utf-8")
    if args.check:
        differ = stale(text)
        for name in differ:
            print(f"README.md: block '{name}' differs from the result files", file=sys.stderr)
        return 1 if differ else 0
    new = regenerate(text)
    if new != text:
        README.write_text(new, encoding="utf-8")
    print(f"README.md: {len(BLOCK.findall(new))} generated blocks, {'rewritten' if new != text else 'unchanged'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
