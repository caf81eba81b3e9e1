"""Video I/O with PyAV: decode every frame with its timestamp, encode H.264 MP4 with the same timestamps.

Frames keep their presentation timestamps, so variable-frame-rate footage stays variable and the frame count
never changes. Display rotation is applied to the pixels on decode (as ffmpeg's autorotate does): detectors see
upright faces and the output displays exactly as the input did, without relying on players honouring a matrix.
"""

from __future__ import annotations

import functools
import os
import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, TypeVar

import av
import numpy as np

from redact.errors import MediaError, UserError, partial_path

T = TypeVar("T")

# Audio codecs the MP4 muxer takes as they are; anything else (PCM in AVI/MOV, for instance) becomes AAC.
MP4_AUDIO_COPY = {"aac", "mp3", "mp2", "ac3", "eac3", "alac", "opus", "flac"}


@dataclass(frozen=True)
class VideoInfo:
    path: str
    width: int  # as displayed, after rotation
    height: int
    fps: float  # average rate; frame timing itself comes from each frame's pts
    frames: int  # counted by `probe(count=True)`, else the container's estimate (0 when unknown)
    duration: float
    rotation: int  # degrees the stored picture is turned for display
    codec: str
    time_base: Fraction
    audio_codec: str | None  # of the first audio track
    audio_tracks: int = 0  # audio tracks in the input
    recorded: str | None = None  # the container's creation_time (what cameras stamp), for the search filters

    @property
    def has_audio(self) -> bool:
        return self.audio_codec is not None


@dataclass(frozen=True)
class Frame:
    index: int
    pts: int  # in VideoInfo.time_base
    image: np.ndarray  # HxWx3 uint8 BGR, upright
    pixels: Any = None  # the same frame on the torch stage's device (a torch.Tensor), once uploaded


@functools.cache
def nvenc_available() -> bool:
    """Whether FFmpeg can open NVIDIA's H.264 encoder here: GPUs of the L4/A10/T4 class have one, the H100 none.
    Opening a tiny encoder is the only reliable test (the codec is compiled in whether or not hardware exists)."""
    try:
        ctx = av.codec.CodecContext.create("h264_nvenc", "w")
        ctx.width, ctx.height, ctx.pix_fmt, ctx.time_base = 256, 256, "yuv420p", Fraction(1, 30)
        ctx.open()
    except Exception:  # noqa: BLE001 - missing codec, driver or hardware all mean "not here"
        return False
    return True


def open_media(path: str | os.PathLike[str], hwaccel: str | None = None) -> av.container.InputContainer:
    """Open any media file for reading, turning every way it can be unusable into one clear MediaError.
    `hwaccel` ("cuda": NVDEC) decodes video on the GPU's decoder; frames still arrive in host memory."""
    p = Path(path)
    if not p.exists():
        raise MediaError(f"{p}: no such file")
    if not p.is_file():
        raise MediaError(f"{p}: not a regular file")
    if p.stat().st_size == 0:
        raise MediaError(f"{p}: file is empty")
    if hwaccel:
        from av.codec.hwaccel import HWAccel

        try:
            return av.open(str(p), metadata_errors="ignore", hwaccel=HWAccel(hwaccel, allow_software_fallback=True))
        except OSError as e:  # the file opened without it (probe comes first): the device is what fails
            raise UserError(f"{p}: cannot decode on the GPU ({hwaccel}) here: {e}; use --decoder cpu") from None
    try:
        return av.open(str(p), metadata_errors="ignore")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as e:
        raise MediaError(f"{p}: not a readable audio or video file ({getattr(e, 'strerror', None) or e})") from None


def _open(path: str | os.PathLike[str], hwaccel: str | None = None) -> av.container.InputContainer:
    container = open_media(path, hwaccel)
    if not container.streams.video:
        container.close()
        raise MediaError(f"{path}: has no video stream")
    return container


def _rotation(stream: av.video.stream.VideoStream, first: av.VideoFrame | None) -> int:
    if first is not None and first.rotation:
        return int(first.rotation) % 360
    return 0


def _upright(image: np.ndarray, rotation: int) -> np.ndarray:
    """Turn stored pixels into display orientation. PyAV reports the display matrix angle counter-clockwise."""
    if rotation == 0:
        return image
    return np.ascontiguousarray(np.rot90(image, k=rotation // 90))


def probe(path: str | os.PathLike[str], count: bool = False) -> VideoInfo:
    """Describe a video; `count=True` decodes it once to count frames exactly and to prove it is decodable."""
    with _open(path) as container:
        stream = container.streams.video[0]
        audio = container.streams.audio[0].codec_context.name if container.streams.audio else None
        first = None
        frames = 0
        try:
            for frame in container.decode(stream):
                first = first or frame
                frames += 1
                if not count:
                    break
        except av.error.FFmpegError as e:
            raise MediaError(f"{path}: corrupt video stream ({e})") from None
        if first is None:
            raise MediaError(f"{path}: video stream has no decodable frames")
        rotation = _rotation(stream, first)
        w, h = (first.height, first.width) if rotation in (90, 270) else (first.width, first.height)
        rate = stream.average_rate or stream.guessed_rate or 0
        duration = float(stream.duration * stream.time_base) if stream.duration else (container.duration or 0) / av.time_base
        if not count:
            frames = stream.frames or int(round(duration * float(rate)))
        return VideoInfo(
            path=str(path), width=w, height=h, fps=float(rate), frames=frames, duration=duration, rotation=rotation,
            codec=stream.codec_context.name, time_base=stream.time_base or Fraction(1, 90000), audio_codec=audio,
            audio_tracks=len(container.streams.audio),
            recorded=container.metadata.get("creation_time") or stream.metadata.get("creation_time") or None,
        )


def read_frames(path: str | os.PathLike[str], threads: int = 0, hwaccel: str | None = None) -> Iterator[Frame]:
    """Every frame in presentation order, upright, BGR. Frames without a pts get one from the average rate."""
    with _open(path, hwaccel) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if threads:
            stream.codec_context.thread_count = threads
        tb = stream.time_base or Fraction(1, 90000)
        rate = stream.average_rate or stream.guessed_rate or Fraction(25)
        step = max(1, int(round(1 / (rate * tb))))
        last = None
        index = 0
        shape = None
        try:
            for frame in container.decode(stream):
                pts = frame.pts if frame.pts is not None else (last + step if last is not None else 0)
                if last is not None and pts <= last:  # repeated or out-of-order stamps would stop the muxer
                    pts = last + 1
                last = pts
                image = _upright(frame.to_ndarray(format="bgr24"), int(frame.rotation or 0) % 360)
                if index and image.shape != shape:
                    raise MediaError(f"{path}: frame size changes mid-stream at frame {index}; not supported")
                shape = image.shape
                yield Frame(index, pts, image)
                index += 1
        except av.error.FFmpegError as e:
            raise MediaError(f"{path}: corrupt or truncated video stream at frame {index} ({e})") from None
        if index == 0:
            raise MediaError(f"{path}: video stream has no decodable frames")
        if stream.frames and index < stream.frames - 1:  # MP4/MOV/AVI indexes say how many frames there must be
            raise MediaError(f"{path}: truncated or corrupt: decoded {index} of {stream.frames} frames")


def frame_times(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray] | None:
    """Every frame's pts in presentation order and whether it is a keyframe, read from the packets without
    decoding (seconds for an hour of footage). None where the stream cannot be addressed by pts (a packet without
    one, or two frames with the same): such a file is read from its start only (`read_frames`)."""
    with _open(path) as container:
        stream = container.streams.video[0]
        pts, key = [], []
        for packet in container.demux(stream):
            if packet.size == 0:  # the demuxer's flush packet
                continue
            if packet.pts is None:
                return None
            pts.append(packet.pts)
            key.append(packet.is_keyframe)
    order = np.argsort(pts, kind="stable")
    pts_sorted = np.asarray(pts, np.int64)[order]
    if not len(pts_sorted) or (np.diff(pts_sorted) <= 0).any():
        return None
    return pts_sorted, np.asarray(key, bool)[order]


def read_range(path: str | os.PathLike[str], pts: np.ndarray, first: int, stop: int) -> Iterator[Frame]:
    """Frames `first` .. `stop` - 1 (indices into `pts`, from `frame_times`), upright, BGR: decoding starts at the
    keyframe before `first`. Raises MediaError when the decoder does not give exactly those frames (a file whose
    packets and frames disagree must not be redacted piecewise)."""
    index = {int(p): i for i, p in enumerate(pts[max(0, first - 1000):stop], start=max(0, first - 1000))}
    want = first
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            if first:
                container.seek(int(pts[first]), stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                i = index.get(frame.pts, -1) if frame.pts is not None else -1
                if i < want:
                    if i < 0 and frame.pts is not None and frame.pts > pts[want]:
                        raise MediaError(f"{path}: frame {want} (pts {pts[want]}) was not decoded")
                    continue
                if i != want:
                    raise MediaError(f"{path}: decoded frame {i} where frame {want} was due")
                yield Frame(i, int(frame.pts), _upright(frame.to_ndarray(format="bgr24"), int(frame.rotation or 0) % 360))
                want += 1
                if want == stop:
                    return
        except av.error.FFmpegError as e:
            raise MediaError(f"{path}: corrupt or truncated video stream at frame {want} ({e})") from None
    if want < stop:
        raise MediaError(f"{path}: truncated or corrupt: decoded up to frame {want} of {stop}")


class AudioTrack:
    """One audio track of the output, fed from audio stream `stream` of `source` (the input, or a redacted WAV):
    copied when MP4 can carry its codec, else transcoded to AAC; read as a stream so memory stays flat."""

    def __init__(self, container: av.container.OutputContainer, source: str | os.PathLike[str], stream: int = 0):
        self.source = av.open(str(source))
        self.pending: av.Packet | None = None
        in_audio = self.source.streams.audio[stream]
        if in_audio.codec_context.name in MP4_AUDIO_COPY:
            self.stream = container.add_stream_from_template(in_audio)
            self.packets: Iterator[av.Packet] | None = (p for p in self.source.demux(in_audio) if p.dts is not None)
        else:
            rate = in_audio.codec_context.sample_rate or 48000
            self.stream = container.add_stream("aac", rate=rate)
            channels = in_audio.codec_context.channels or 2
            layout = in_audio.codec_context.layout.name if in_audio.codec_context.layout else ""
            if not layout or layout.endswith("channels"):  # unnamed layouts (plain PCM) are refused by AAC
                layout = {1: "mono", 2: "stereo", 6: "5.1"}.get(channels, "stereo")
            self.stream.layout = layout
            self.packets = self._transcoded(in_audio, av.AudioResampler(format="fltp", layout=layout, rate=rate))

    def _transcoded(self, in_audio: av.audio.stream.AudioStream, resampler: av.AudioResampler) -> Iterator[av.Packet]:
        for frame in self.source.decode(in_audio):
            frame.pts = None
            for resampled in resampler.resample(frame):
                yield from self.stream.encode(resampled)
        for resampled in resampler.resample(None):
            yield from self.stream.encode(resampled)
        yield from self.stream.encode(None)

    def mux_until(self, container: av.container.OutputContainer, seconds: float | None) -> None:
        """Mux this track's packets up to `seconds` of media time (all remaining ones when None)."""
        while self.packets is not None:
            packet = self.pending or next(self.packets, None)
            self.pending = None
            if packet is None:
                self.packets = None
                return
            known = packet.dts is not None and packet.time_base
            if seconds is not None and known and float(packet.dts * packet.time_base) > seconds:
                self.pending = packet
                return
            packet.stream = self.stream
            container.mux(packet)


class VideoWriter:
    """H.264 MP4 writer that keeps the input's timestamps and its audio tracks.

    `audio` lists the output's audio tracks as (source, stream): stream `stream` (counted among the audio
    streams) of `source`, any file PyAV can read (the audio stage hands over a redacted WAV per track). The
    default is every audio track of the input, as it is.

    The output is written under a temporary name; `finish()` completes it, `publish()` renames it into place
    and `abort()` removes it, so no half-written file is ever published.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        info: VideoInfo,
        crf: int = 20,
        preset: str = "veryfast",
        encoder: str = "libx264",
        threads: int = 0,
        audio: list[tuple[str | os.PathLike[str], int]] | None = None,
        joins: Path | None = None,
        piece: bool = False,
    ):
        """`piece`: a segment of a longer output (`Redactor` with segments), encoded without B-frames so that
        pieces joined end to end keep their decoding timestamps increasing. `joins`: write no frames but
        join such pieces (`append`), the first of which is `joins`: its stream is this output's."""
        self.path = Path(path)
        self.tmp = partial_path(self.path)
        self.info = info
        # yuv420p needs even sizes: odd footage is padded by one replicated row/column, never cropped.
        self.width = info.width + info.width % 2
        self.height = info.height + info.height % 2
        options = {"movflags": "+faststart"}
        if piece:
            # A piece starts late: its MP4 edit list states the start in the movie timescale (1/1000 s by default),
            # which would move every frame of the joined output by up to half a millisecond. State it exactly.
            options["movie_timescale"] = str(info.time_base.denominator)
        self.container = av.open(str(self.tmp), "w", format="mp4", options=options)
        self.joining = joins is not None
        if joins is not None:
            with av.open(str(joins)) as first:
                self.stream = self.container.add_stream_from_template(first.streams.video[0])
        else:
            self.stream = self.container.add_stream(encoder, rate=Fraction(info.fps).limit_denominator(1001) if info.fps else 25)
            self.stream.width, self.stream.height = self.width, self.height
            self.stream.pix_fmt = "yuv420p"
            self.stream.time_base = info.time_base
            self.stream.codec_context.time_base = info.time_base
            if encoder == "libx264":
                self.stream.options = {"crf": str(crf), "preset": preset, **({"bf": "0"} if piece else {})}
            else:
                self.stream.options = {"cq": str(crf), "preset": "p4", **({"bf": "0"} if piece else {})}
            self.stream.thread_type = "AUTO"  # frame threads: PyAV's default slices scale worse over many cores
            if threads:
                self.stream.codec_context.thread_count = threads
        self.frames = 0
        self.audio: list[AudioTrack] = []
        for source, stream in audio if audio is not None else [(info.path, k) for k in range(info.audio_tracks)]:
            self.audio.append(AudioTrack(self.container, source, stream))

    def _mux_audio_until(self, seconds: float | None) -> None:
        """Interleave audio packets up to `seconds` of video time (all remaining ones when None)."""
        for track in self.audio:
            track.mux_until(self.container, seconds)

    def write(self, image: np.ndarray, pts: int) -> None:
        if image.shape[0] != self.height or image.shape[1] != self.width:
            image = np.pad(image, ((0, self.height - image.shape[0]), (0, self.width - image.shape[1]), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        frame.pts = pts
        frame.time_base = self.info.time_base
        self._mux_audio_until(float(pts * self.info.time_base) + 0.5)
        self.container.mux(self.stream.encode(frame))
        self.frames += 1

    def append(self, piece: Path) -> None:
        """The packets of `piece` (an MP4 written with `piece=True`) after those already here, as they are."""
        with av.open(str(piece)) as source:
            stream = source.streams.video[0]
            for packet in source.demux(stream):
                if packet.size == 0:
                    continue
                if packet.pts is not None:
                    self._mux_audio_until(float(packet.pts * packet.time_base) + 0.5)
                packet.stream = self.stream
                self.container.mux(packet)
                self.frames += 1

    def finish(self) -> None:
        """Flush the encoder and write the trailer; the file is complete but still under its temporary name."""
        if not self.joining:
            self.container.mux(self.stream.encode(None))
        self._mux_audio_until(None)
        self.container.close()
        for track in self.audio:
            track.source.close()

    def publish(self) -> Path:
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        for c in (self.container, *(track.source for track in self.audio)):
            try:
                if c is not None:
                    c.close()
            except Exception:  # noqa: BLE001 - closing a broken container must not mask the original error
                pass
        self.tmp.unlink(missing_ok=True)


def threaded(items: Iterable[T], maxsize: int = 8) -> Iterator[T]:
    """Produce `items` in a background thread (bounded), re-raising its exception in the consumer."""
    q: queue.Queue = queue.Queue(maxsize)
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                q.put(item)
            q.put(done)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            q.put(e)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while (item := q.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(0.05)
