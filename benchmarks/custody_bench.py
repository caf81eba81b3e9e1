"""What signing costs: a release (and a render) of the demo clip with the agency's key against the same without.

    python -m benchmarks.custody_bench [--input demo/street.mp4] [--repeat 3] [--out benchmarks/results/custody.json]

Runs the pipeline once (unsigned) on the input, then alternates unsigned and signed renders and releases of it
`--repeat` times each, in the same process, and reports the medians and their differences. A signed render embeds
Content Credentials and seals the log; a signed release writes the public key, the log's seal and the manifest's
signature, and checks the signatures of the log and the history. The issue's target: signing adds under 1 s to a
release of the demo clip.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.provenance import ROOT, write_result
from redact.pipeline import RedactOptions, Redactor
from redact.plan import Plan, plan_path
from redact.review.custody import Custody
from redact.review.decisions import decisions_path, load, load_reasons
from redact.review.keys import init_key
from redact.review.release import release
from redact.review.render import bounds_of, render
from redact.review.verify import verify_package


def approve(outdir: Path, stem: str, custody: Custody) -> None:
    reasons = load_reasons()
    with Plan(plan_path(outdir, stem)) as plan:
        bounds = bounds_of(plan)
    decisions, _ = load(decisions_path(outdir, stem), reasons, bounds, custody)
    decisions.apply({"op": "approve"}, "Bench Reviewer", reasons, bounds)
    decisions.save()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", type=Path, default=ROOT / "demo" / "street.mp4")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "custody.json")
    args = ap.parse_args()
    if not args.input.exists():
        from benchmarks.make_demo import main as make_demo

        make_demo([str(args.input)])
    stem = args.input.stem
    with tempfile.TemporaryDirectory(prefix="custody-bench.") as tmp:
        work = Path(tmp)
        signer = init_key(work / "keys" / "agency.key", "Bench Police Department")
        signed, unsigned = Custody(signer, allow_unsigned=True), Custody(None)
        base = work / "run"
        redactor = Redactor(RedactOptions(device="cpu", index_transcripts=False))
        redactor.custody = unsigned
        redactor.run(args.input, base)
        times: dict[str, list[float]] = {k: [] for k in ("render_unsigned", "render_signed", "release_unsigned",
                                                           "release_signed", "verify_signed")}
        for n in range(args.repeat):
            for kind, custody in (("unsigned", unsigned), ("signed", signed)):
                outdir = work / f"{kind}{n}"
                shutil.copytree(base, outdir)
                approve(outdir, stem, custody)
                start = time.perf_counter()
                render(outdir, stem, custody=custody)
                times[f"render_{kind}"].append(time.perf_counter() - start)
                start = time.perf_counter()
                made = release(outdir, stem, case="BENCH-1", requester="Bench", dest=work / f"rel-{kind}{n}",
                               custody=custody)
                times[f"release_{kind}"].append(time.perf_counter() - start)
                if kind == "signed":
                    start = time.perf_counter()
                    verdict = verify_package(made.zip, expect_key=signer.fingerprint,
                                             trust_anchor=signer.path.parent / "ca.crt")
                    times["verify_signed"].append(time.perf_counter() - start)
                    assert verdict.ok, verdict.failed
        medians = {k: round(statistics.median(v), 3) for k, v in times.items()}
        result = {
            "input": str(args.input.relative_to(ROOT) if args.input.is_relative_to(ROOT) else args.input),
            "frames": Plan(plan_path(base, stem)).frame_count, "repeat": args.repeat,
            "seconds": {k: [round(x, 3) for x in v] for k, v in times.items()}, "median_s": medians,
            "release_signing_cost_s": round(medians["release_signed"] - medians["release_unsigned"], 3),
            "render_signing_cost_s": round(medians["render_signed"] - medians["render_unsigned"], 3),
        }
    write_result(args.out, result, __file__)
    print(result)


if __name__ == "__main__":
    main()
