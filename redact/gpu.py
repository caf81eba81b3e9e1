"""The torch stage: frames go to the device once, wait there while their boxes become final, are redacted there
and only redacted frames come back.

Decode, this stage and encode run in threads of their own with bounded queues between them (pipeline.py), so
on a GPU node the copies, the detectors and libx264 overlap. A frame is copied to the GPU from pinned memory
on a CUDA stream of its own while the camera motion of the frame before is measured on the CPU; both detectors
then read it there in batches (`detect.DetectionQueue`, resized on the device); the redaction runs on the
device inside the masks (`anonymize.anonymize_tensor`). The decoded host copy is kept beside it, so a frame
without a box to redact is never copied back at all; a redacted one comes back asynchronously into pinned
memory and the encoder thread waits for it.

On a CPU the same code runs with the device tensors being views of the host frames: that is how the tests
check this path against the onnxruntime one without a GPU.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace

import numpy as np

from redact.anonymize import RedactionPolicy, anonymize_tensor
from redact.detect import Detections
from redact.video import Frame


class TorchStage:
    def __init__(self, device: str):
        import torch

        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.copies = torch.cuda.Stream(self.device) if self.cuda else None

    def upload(self, frames: Iterable[Frame]) -> Iterator[Frame]:
        """Each frame with `pixels` on the device. The copy of frame i is issued before frame i - 1 is handed
        on, so the copy overlaps whatever the consumer does with frame i - 1 (the camera-motion estimate)."""
        import torch

        if not self.cuda:
            for frame in frames:
                yield replace(frame, pixels=torch.from_numpy(frame.image))
            return
        pending: tuple[Frame, torch.cuda.Event] | None = None
        consumer = torch.cuda.default_stream(self.device)
        for frame in frames:
            with torch.cuda.stream(self.copies):
                pixels = torch.from_numpy(frame.image).pin_memory().to(self.device, non_blocking=True)
                copied = torch.cuda.Event()
                copied.record(self.copies)
            pixels.record_stream(consumer)  # freed only once the consumer's work on it is done
            if pending is not None:
                pending[1].synchronize()
                yield pending[0]
            pending = replace(frame, pixels=pixels), copied
        if pending is not None:
            pending[1].synchronize()
            yield pending[0]

    def finish(self, frame: Frame, boxes: Detections, policy: RedactionPolicy) -> Callable[[], np.ndarray]:
        """Redact `frame` on the device; returns what gives the finished host image (waiting for the copy back),
        to be called in the encoder's thread."""
        import torch

        if not len(boxes):
            return lambda: frame.image  # the host copy is the frame as decoded
        anonymize_tensor(frame.pixels, boxes, policy)
        if not self.cuda:
            return lambda: frame.image  # pixels is a view of it: already redacted
        host = torch.empty(frame.pixels.shape, dtype=torch.uint8, pin_memory=True)
        host.copy_(frame.pixels, non_blocking=True)
        copied = torch.cuda.Event()
        copied.record()

        def fetch() -> np.ndarray:
            copied.synchronize()
            return host.numpy()

        return fetch
