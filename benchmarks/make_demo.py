"""Demo footage for `make demo`: a 720p street-scene clip of real annotated car and face photos filmed by a moving,
shaking virtual camera, with the plates and faces at realistic sizes. The photos ship with the repository in
benchmarks/demo_media/ (sources and licences in its README.md), so a fresh clone needs nothing beside it.

    .venv/bin/python -m benchmarks.make_demo demo/street.mp4 [--frames 150]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from benchmarks.synth import ClipSpec, load_photos, make_clip

MEDIA = Path(__file__).resolve().parent / "demo_media"  # faces/ and plates/, each a gt.csv in evaldata's format


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--frames", type=int, default=150)
    args = parser.parse_args(argv)
    faces, plates = load_photos("faces", MEDIA), load_photos("plates", MEDIA)
    photos = [p for pair in zip(plates, faces, strict=True) for p in pair]
    spec = ClipSpec(kind="faces", index=0, seed=7, frames=args.frames, base=12.0, zoom_ratio=2.0, zoom_mode="inout",
                    max_tiles=24, pan=0.35, crf=23, photos=tuple(p.key for p in photos))  # keys: part of the cache name
    clip = make_clip(spec, photos, args.out.parent / ".demo-cache")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(clip.video, args.out)
    print(f"{args.out}: {args.frames} frames, 1280x720, {len(photos)} real photos with faces and plates")


if __name__ == "__main__":
    main()
