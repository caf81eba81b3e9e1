"""The release package: what an agency hands a records requester for one redacted video.

`release(outdir, stem, ...)` reads the outputs of `redact run` / `redact render` in OUTDIR and writes

    DEST/<case>-<stem>/            (the case id and stem with anything but letters, digits, ".", "_", "-" as "_")
        <stem>.redacted.mp4        the published (redacted) video, byte for byte what the audit log hashed
        <stem>.transcript.json     the redacted transcripts, where the run wrote them (also .srt, .vtt, .txt)
        exemptions.csv             one row per redaction / un-redaction: times, frames, class, reason code, statute
        report.html                self-contained (inline CSS, thumbnails as data: URIs)
        report.pdf                 the same report for printing
        manifest.sha256            `sha256sum -c manifest.sha256` run inside the folder verifies every file
    and, where the agency has a signing key (`redact.review.keys`; `redact verify` checks all of it):
        signing-key.pub            the agency's public key (its fingerprint is in the report)
        log-seal.json              the audit log's seal: the signed statement of the video's SHA-256 (the log
                                   itself stays with the agency)
        manifest.sha256.sig        the key's signature of manifest.sha256 (base64 Ed25519)
    DEST/<case>-<stem>.zip         the folder, zipped (its files under `<case>-<stem>/`)

Never in the package: the original video, the plan (it holds every face's place and the unredacted words), the
decisions file and the audit log (their words items may hold the text of redacted speech, the log names the
original's path). The report quotes only the original's SHA-256 and size. Thumbnails are taken from the
packaged (redacted) video, never from the original.

Refusals (UserError, nothing written): a signature on the audit log or the decisions history fails, or they are
unsigned while the agency signs (`redact.review.custody`), the decisions are not approved (unless `allow_unreviewed`: then every
PDF page, the HTML and the CSV's reviewer column say NOT REVIEWED), the decisions on disk changed since the last
render, the video does not match the SHA-256 its audit log records, the folder or the zip already exists (a
package is never overwritten; remove it or choose another DEST).

Everything is written into a hidden partial folder (`DEST/.<name>.partial`) and a partial zip, and renamed into
place only when complete: a failure leaves no package, half or whole.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import functools
import hashlib
import io
import json
import os
import re
import shutil
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from importlib.resources import files as package_files
from pathlib import Path

import numpy as np

from redact.audio import TRANSCRIPT_SUFFIXES
from redact.errors import UserError, partial_path, writing_to
from redact.models import sha256_file
from redact.review.custody import SEAL, Custody
from redact.review.keys import Signer

NOT_REVIEWED = "NOT REVIEWED"
CSV_COLUMNS = ("start_time", "end_time", "first_frame", "last_frame", "media", "class", "source", "action",
               "reason_code", "statute", "reviewer", "target")
MAX_THUMBNAILS = 200
THUMB_WIDTH = 320
MARK_BGR = (0, 215, 255)  # the outline of what a thumbnail shows: yellow
DEJAVU = Path("/usr/share/fonts/truetype/dejavu")
MANIFEST, SIGNATURE, PUBLIC_KEY, LOG_SEAL = "manifest.sha256", "manifest.sha256.sig", "signing-key.pub", "log-seal.json"


@dataclass
class ReleaseResult:
    folder: Path
    zip: Path
    files: list[str] = field(default_factory=list)  # names inside the folder, manifest last


def package_name(case: str, stem: str) -> str:
    """The folder's name: `<case>-<stem>`, with characters unsafe in a file name replaced."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", f"{case.strip()}-{stem}").lstrip(".")


def clock(seconds: float | None) -> str:
    """HH:MM:SS.mmm"""
    if seconds is None:
        return ""
    ms = int(round(float(seconds) * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


def _copy_hashed(src: Path, dst: Path) -> str:
    """Copy `src` to `dst` (synced) and return the SHA-256 of the bytes copied: what is packaged is what is hashed."""
    h = hashlib.sha256()
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while chunk := fin.read(1 << 20):
            h.update(chunk)
            fout.write(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    return h.hexdigest()


def _write(path: Path, data: str | bytes) -> None:
    with open(path, "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())


# ------------------------------------------------------------------------------------------------ checks
def read_log(outdir: Path, stem: str) -> dict:
    """The audit log, which must come from a run or render that knows of reviews."""
    from redact.review.render import read_log as audit_log

    log = audit_log(outdir, stem)
    if not isinstance(log.get("review"), dict) or not isinstance(log.get("exemptions"), list):
        raise UserError(f"{outdir / (stem + '.redaction.json')}: the audit log has no review and exemptions (made "
                        "before reviews existed?); run `redact render` first")
    return log


def _reasons_of(log: dict, reasons: str | Path | None):
    """The codes to check the decisions with: the file given, else those the last render used (from its log)."""
    from redact.review.decisions import Reason, Reasons, load_reasons

    if reasons is not None:
        return load_reasons(reasons)
    recorded = (log["review"].get("reasons") or {})
    codes = recorded.get("codes") or {}
    if not codes:
        return load_reasons(None)
    return Reasons({c: Reason(c, str(v.get("label", c)), str(v.get("statute", ""))) for c, v in codes.items()},
                   recorded.get("auto") or next(iter(codes)), str(recorded.get("source", "")))


def current_decisions_digest(outdir: Path, stem: str, log: dict, reasons: str | Path | None,
                             custody: Custody | None = None) -> str:
    """The digest of the decisions on disk now, as `redact.review.decisions` reads them (an outside edit included)."""
    from redact.plan import Plan, plan_path
    from redact.review import decisions as dec
    from redact.review.render import bounds_of

    path = dec.decisions_path(outdir, stem)
    if not path.exists():
        return dec.digest(dec.empty_state())
    plan_file = outdir / log["review"]["plan"] if log["review"].get("plan") else plan_path(outdir, stem)
    with Plan(plan_file) as plan:
        bounds = bounds_of(plan)
    state, _ = dec.load(path, _reasons_of(log, reasons), bounds, custody)
    return dec.digest(state.state)


def check_releasable(outdir: Path, stem: str, log: dict, allow_unreviewed: bool, reasons: str | Path | None,
                     custody: Custody | None = None) -> None:
    """Raise UserError for what `release` refuses (see the module's docstring), before anything is written."""
    custody = custody or Custody.resolve()
    custody.check_log(log, outdir / f"{stem}.redaction.json")
    review = log["review"]
    if review.get("approved") is None and not allow_unreviewed:
        raise UserError(f"{stem}: the decisions are not approved; approve them in `redact review` and render, "
                        "or release with --allow-unreviewed (every page then says NOT REVIEWED)")
    if current_decisions_digest(outdir, stem, log, reasons, custody) != review.get("decisions_sha256"):
        raise UserError(f"{stem}: the decisions changed after the last render; render first (`redact render`)")


# ------------------------------------------------------------------------------------------------ contents
def exemption_rows(exemptions: list[dict], reviewed: bool) -> list[dict]:
    rows = []
    for e in exemptions:
        reviewer = e.get("reviewer") or ""
        if not reviewed:
            reviewer = f"{NOT_REVIEWED} ({reviewer})" if reviewer else NOT_REVIEWED
        rows.append({
            "start_time": clock(e.get("start")), "end_time": clock(e.get("end")),
            "first_frame": "" if e.get("first_frame") is None else int(e["first_frame"]),
            "last_frame": "" if e.get("last_frame") is None else int(e["last_frame"]),
            "media": e.get("kind", ""), "class": e.get("class", ""), "source": e.get("source", ""),
            "action": e.get("action", ""), "reason_code": e.get("reason", ""), "statute": e.get("statute", ""),
            "reviewer": reviewer, "target": e.get("target", ""),
        })
    return rows


def exemptions_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, CSV_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def wants_thumbnail(e: dict) -> bool:
    """Un-redactions and manual regions / frame ranges that have frames get a thumbnail of their middle frame."""
    return e.get("kind") == "video" and e.get("first_frame") is not None and (
        e.get("action") == "unredacted" or e.get("source") == "manual")


def thumbnail_spots(outdir: Path, stem: str, log: dict) -> dict[int, tuple[int, list[float] | None]]:
    """Where each exemption that `wants_thumbnail` is shown, keyed by its index: a frame and the box to mark there
    (None: the whole frame). A track's is its box in the frame of its range nearest the middle; a region's is its
    drawn box, in its middle frame (a followed region's on its first frame, where it was drawn)."""
    from redact.plan import Plan, plan_path

    regions = {f"regions {r['id']}": r for r in (log["review"].get("decisions") or {}).get("regions", [])}
    wanted = [(i, e) for i, e in enumerate(log["exemptions"]) if wants_thumbnail(e)][:MAX_THUMBNAILS]
    spots: dict[int, tuple[int, list[float] | None]] = {}
    plan_file = outdir / log["review"]["plan"] if log["review"].get("plan") else plan_path(outdir, stem)
    with Plan(plan_file) as plan:
        for i, e in wanted:
            a, b = int(e["first_frame"]), int(e["last_frame"] if e.get("last_frame") is not None else e["first_frame"])
            spot: tuple[int, list[float] | None] = ((a + b) // 2, None)
            target = str(e.get("target", ""))
            if target.startswith("track ") and target[6:].isdigit():
                boxes = plan.track_boxes(int(target[6:]))
                inside = (boxes.frame >= a) & (boxes.frame <= b)
                if inside.any():
                    k = int(np.argmin(np.where(inside, np.abs(boxes.frame - (a + b) / 2), np.inf)))
                    spot = (int(boxes.frame[k]), [float(v) for v in boxes.dets.xyxy[k]])
            elif target in regions:
                region = regions[target]
                spot = (a if region["follow"] else spot[0], [float(v) for v in region["box"]])
            spots[i] = spot
    return spots


def thumbnails(video: Path, spots: dict[int, tuple[int, list[float] | None]]) -> dict[int, tuple[int, bytes]]:
    """The frame and a JPEG of each spot (`thumbnail_spots`), keyed as they are, decoded from the (redacted) `video`
    given: around the box, marked, where there is one."""
    import cv2

    from redact.video import read_frames

    wanted: dict[int, list[int]] = {}
    for i, (frame, _) in spots.items():
        wanted.setdefault(frame, []).append(i)
    out: dict[int, tuple[int, bytes]] = {}
    if not wanted:
        return out
    end = max(wanted)
    last_image = None
    frames = read_frames(video)
    try:
        for frame in frames:
            last_image = frame.image
            if frame.index in wanted:
                for i in wanted.pop(frame.index):
                    out[i] = frame.index, _jpeg(cv2, _marked(cv2, frame.image, spots[i][1]))
            if frame.index >= end:
                break
    finally:
        frames.close()
    for indices in wanted.values():  # past the video's end (a log of a longer video?): its last frame
        for i in indices:
            if last_image is not None:
                out[i] = spots[i][0], _jpeg(cv2, _marked(cv2, last_image, spots[i][1]))
    return out


def _marked(cv2, image: np.ndarray, box: list[float] | None) -> np.ndarray:
    """`image` around `box` (the box and as much again on each side, at least 120 px each way), with the box
    outlined in yellow: a released face must be seen for what it is, not looked for in a whole frame."""
    if box is None:
        return image
    h, w = image.shape[:2]
    x1, y1, x2, y2 = box
    half_w, half_h = max((x2 - x1) * 1.5, 60), max((y2 - y1) * 1.5, 60)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    left, top = int(max(0, cx - half_w)), int(max(0, cy - half_h))
    right, bottom = int(min(w, cx + half_w)), int(min(h, cy + half_h))
    crop = image[top:bottom, left:right].copy()
    thick = max(2, round(max(crop.shape[:2]) / 160))
    cv2.rectangle(crop, (int(x1) - left - thick, int(y1) - top - thick), (int(x2) - left + thick, int(y2) - top + thick),
                  MARK_BGR, thick)
    return crop


def _jpeg(cv2, image) -> bytes:
    h, w = image.shape[:2]
    if w > THUMB_WIDTH:
        image = cv2.resize(image, (THUMB_WIDTH, max(1, round(h * THUMB_WIDTH / w))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise RuntimeError("JPEG encoding of a thumbnail failed")
    return buf.tobytes()


def signature_fact(log: dict, signer: Signer | None) -> str:
    """What the report says of who signed the package, the log, the history and the video, for a requester to
    check with `redact verify` against the fingerprint the agency publishes."""
    if signer is None:
        return "unsigned: the agency has no signing key; the checksums prove only that the files match each other"
    review = log["review"]
    entries, signed = review.get("history_entries") or 0, review.get("history_signed") or 0
    said = [f"package signed with the agency's Ed25519 key, fingerprint {signer.fingerprint}",
            "audit log signed" if SEAL in log else "audit log UNSIGNED (made before the key)",
            f"decision history: {signed} of {entries} entries signed" if entries else "no decision history"]
    credentials = log.get("content_credentials") or {}
    said.append("Content Credentials (C2PA) in the video" if credentials.get("embedded")
                else "no Content Credentials in the video")
    return "; ".join(said) + "; check with `redact verify`"


def report_context(log: dict, *, case: str, requester: str, released: str, rows: list[dict],
                   thumbs: dict[int, tuple[int, bytes]], files: list[tuple[str, int, str]], label_codes: bool,
                   signature: str) -> dict:
    review = log["review"]
    approved = review.get("approved")
    exemptions = log["exemptions"]
    codes = (review.get("reasons") or {}).get("codes") or {}
    used = Counter(e.get("reason", "") for e in exemptions)
    legend = [{"code": c, "label": v.get("label", ""), "statute": v.get("statute", ""), "count": used.get(c, 0)}
              for c, v in codes.items()]
    for c in used:
        if c not in codes:
            legend.append({"code": c, "label": "(not in the code list)", "statute": "", "count": used[c]})
    summary = Counter((e.get("kind", ""), e.get("action", ""), e.get("source", "")) for e in exemptions)
    stats = log.get("stats") or {}
    return {
        "case": case, "requester": requester, "released": released, "reviewed": approved is not None,
        "not_reviewed": NOT_REVIEWED, "approved": approved, "label_codes": label_codes,
        "tool": log.get("tool") or {}, "input": log.get("input") or {}, "output": log.get("output") or {},
        "video": log.get("video") or {}, "models": log.get("models") or [],
        "asr_model": ((log.get("audio") or {}).get("model") or None),
        "rendered": review.get("rendered"), "history_entries": review.get("history_entries"),
        "history_head": review.get("history_head"), "outside_edits": review.get("outside_edits") or [],
        "summary": [{"media": k[0], "action": k[1], "source": k[2], "count": n} for k, n in sorted(summary.items())],
        "total": len(exemptions), "frames": stats.get("frames"), "frames_redacted": stats.get("frames_redacted"),
        "rows": rows, "legend": legend, "files": files, "signature": signature,
        "thumbs": [{"row": rows[i], "n": i + 1, "frame": frame, "jpeg": data,
                    "uri": "data:image/jpeg;base64," + base64.b64encode(data).decode()}
                   for i, (frame, data) in sorted(thumbs.items())],
        "thumbs_capped": sum(map(wants_thumbnail, exemptions)) > len(thumbs),
    }


def report_html(ctx: dict) -> str:
    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    template = env.from_string((package_files("redact.review") / "templates" / "report.html.j2").read_text(encoding="utf-8"))
    return template.render(**ctx)


def report_pdf(ctx: dict) -> bytes:
    from fpdf import FPDF
    from fpdf.fonts import FontFace

    unicode_font = (DEJAVU / "DejaVuSans.ttf").is_file() and (DEJAVU / "DejaVuSans-Bold.ttf").is_file()
    shown = _glyphs(DEJAVU / "DejaVuSans.ttf") if unicode_font else frozenset(range(256))

    def t(value: object) -> str:
        """Text the font can show: characters it has no glyph for (CJK in DejaVu, all but latin-1 in the core
        font) as '?'."""
        s = "" if value is None else str(value)
        return "".join(c if ord(c) in shown or c in "\n\t" else "?" for c in s)

    class Report(FPDF):
        def header(self) -> None:
            if not ctx["reviewed"]:
                self.set_font(family, "B", 14)
                self.set_text_color(200, 0, 0)
                self.cell(0, 8, t(f"{NOT_REVIEWED}: these redactions were released without a reviewer's approval"),
                          align="C", new_x="LMARGIN", new_y="NEXT")
                self.set_text_color(0, 0, 0)
                self.ln(1)

        def footer(self) -> None:
            self.set_y(-12)
            self.set_font(family, "", 8)
            self.set_text_color(90, 90, 90)
            self.cell(0, 6, t(f"Case {ctx['case']} - released {ctx['released']} - page {self.page_no()}/{{nb}}"),
                      align="C")
            self.set_text_color(0, 0, 0)

    pdf = Report(orientation="L", unit="mm", format="A4")
    if unicode_font:
        pdf.add_font("DejaVu", "", str(DEJAVU / "DejaVuSans.ttf"))
        pdf.add_font("DejaVu", "B", str(DEJAVU / "DejaVuSans-Bold.ttf"))
        family = "DejaVu"
    else:
        family = "Helvetica"
    pdf.set_title(t(f"Redaction report, case {ctx['case']}"))
    pdf.set_creator(t(f"redact {ctx['tool'].get('version', '')}"))
    pdf.set_auto_page_break(True, margin=15)
    pdf.add_page()
    width = pdf.epw

    def heading(text: str) -> None:
        pdf.ln(3)
        pdf.set_font(family, "B", 12)
        pdf.cell(0, 7, t(text), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font(family, "", 8)

    def table(rows: list[list[object]], widths: tuple[float, ...], size: float = 8, full: bool = True) -> None:
        pdf.set_font(family, "", size)
        with pdf.table(col_widths=widths, width=width if full else sum(widths), align="LEFT", line_height=size * 0.5,
                       text_align="LEFT",
                       headings_style=FontFace(emphasis="BOLD", fill_color=(225, 225, 225)), padding=0.8) as tbl:
            for r in rows:
                row = tbl.row()
                for v in r:
                    row.cell(t(v))

    pdf.set_font(family, "B", 16)
    pdf.cell(0, 9, t(f"Redaction report - case {ctx['case']}"), new_x="LMARGIN", new_y="NEXT")
    approved = ctx["approved"]
    reviewer = (f"{approved['by']}, approved {approved['at']}" if approved
                else f"{NOT_REVIEWED} - no reviewer approved these redactions")
    facts = [
        ["Case", ctx["case"]], ["Requester", ctx["requester"]], ["Date of release", ctx["released"]],
        ["Reviewer", reviewer],
        ["Original video", f"SHA-256 {ctx['input'].get('sha256', '')} ({ctx['input'].get('size', '')} bytes; not released)"],
        ["Released video", f"SHA-256 {ctx['output'].get('sha256', '')} ({ctx['output'].get('size', '')} bytes)"],
        ["Video", f"{ctx['video'].get('width', '')}x{ctx['video'].get('height', '')}, {ctx['video'].get('frames', '')} "
                  f"frames, {ctx['video'].get('duration', '')} s"],
        ["Tool", f"{ctx['tool'].get('name', 'redact')} {ctx['tool'].get('version', '')}; rendered {ctx['rendered'] or ''}"
                 + ("; reason codes burnt onto each box" if ctx["label_codes"] else "")],
        ["Decision history", f"{ctx['history_entries'] or 0} entries, head {ctx['history_head'] or ''}"],
        ["Signature", ctx["signature"]],
    ]
    if ctx["outside_edits"]:
        facts.append(["Outside edits", "; ".join(ctx["outside_edits"])])
    pdf.set_font(family, "", 9)
    with pdf.table(col_widths=(40, width - 40), width=width, first_row_as_headings=False, line_height=4.5,
                   text_align="LEFT", padding=0.8) as tbl:
        for k, v in facts:
            row = tbl.row()
            row.cell(t(k), style=FontFace(emphasis="BOLD"))
            row.cell(t(v), style=FontFace(emphasis="BOLD", color=(200, 0, 0)) if v.startswith(NOT_REVIEWED) else None)

    heading("Models")
    models = [["Role", "Model", "SHA-256", "Licence"]]
    models += [[m.get("role", ""), m.get("id", ""), m.get("sha256", ""), m.get("licence", "")] for m in ctx["models"]]
    if ctx["asr_model"]:
        models.append(["speech", ctx["asr_model"].get("id", ""), ctx["asr_model"].get("sha256", ""), ""])
    table(models, (20, 35, 120, width - 175))

    heading("Summary")
    summary = [["Media", "Action", "Source", "Entries"]]
    summary += [[s["media"], s["action"], s["source"], s["count"]] for s in ctx["summary"]]
    summary.append(["all", "", "", ctx["total"]])
    table(summary, (30, 30, 30, 20), full=False)
    if ctx["frames"] is not None:
        pdf.cell(0, 5, t(f"Frames the automatic run redacted (before review): {ctx['frames_redacted']} of {ctx['frames']}"),
                 new_x="LMARGIN", new_y="NEXT")

    heading("Reason codes")
    legend = [["Code", "Label", "Statute", "Used"]] + [[g["code"], g["label"], g["statute"], g["count"]]
                                                      for g in ctx["legend"]]
    table(legend, (30, 130, width - 175, 15))

    heading(f"Exemptions ({ctx['total']})")
    rows = [["#", "Start", "End", "Frames", "Media", "Class", "Source", "Action", "Code", "Statute", "Reviewer", "Target"]]
    for n, r in enumerate(ctx["rows"], 1):
        frames = f"{r['first_frame']}-{r['last_frame']}" if r["first_frame"] != "" else ""
        rows.append([n, r["start_time"], r["end_time"], frames, r["media"], r["class"], r["source"], r["action"],
                     r["reason_code"], r["statute"], r["reviewer"], r["target"]])
    table(rows, (8, 22, 22, 17, 13, 16, 15, 20, 22, 40, 42, width - 237), size=7)

    if ctx["thumbs"]:
        heading("Un-redactions and manual redactions (middle frame, from the released video; tracks and regions "
                "outlined in yellow)")
        x0, y = pdf.l_margin, pdf.get_y() + 1
        cell_w, gap = 62.0, 5.0
        x = x0
        row_h = 0.0
        for th in ctx["thumbs"]:
            from PIL import Image

            img = Image.open(io.BytesIO(th["jpeg"]))
            h = cell_w * img.height / img.width
            if x + cell_w > x0 + width + 0.1:
                x, y = x0, y + row_h + gap
                row_h = 0.0
            if y + h + 10 > pdf.h - pdf.b_margin:
                pdf.add_page()
                x, y, row_h = x0, pdf.get_y() + 1, 0.0
            pdf.image(io.BytesIO(th["jpeg"]), x=x, y=y, w=cell_w, h=h)
            r = th["row"]
            pdf.set_xy(x, y + h + 0.5)
            pdf.set_font(family, "", 7)
            pdf.multi_cell(cell_w, 3.2, t(f"#{th['n']} {r['target']} - {r['action']} ({r['source']}) - {r['reason_code']}\n"
                                           f"{r['start_time']}-{r['end_time']}, frame {th['frame']}"),
                           align="L")
            row_h = max(row_h, h + 8)
            x += cell_w + gap
        pdf.set_xy(x0, y + row_h + 2)
        if ctx["thumbs_capped"]:
            pdf.cell(0, 5, t(f"(first {MAX_THUMBNAILS} shown)"), new_x="LMARGIN", new_y="NEXT")

    heading("Files in this package")
    table([["File", "Bytes", "SHA-256"]] + [[n, s, h] for n, s, h in ctx["files"]], (80, 25, width - 105))
    return bytes(pdf.output())


@functools.cache
def _glyphs(font: Path) -> frozenset[int]:
    from fontTools.ttLib import TTFont

    return frozenset(TTFont(font, lazy=True).getBestCmap())


# ------------------------------------------------------------------------------------------------ the package
def _zip(folder: Path, name: str, target: Path) -> None:
    with zipfile.ZipFile(target, "w") as z:
        for f in sorted(folder.iterdir()):
            kind = zipfile.ZIP_STORED if f.suffix == ".mp4" else zipfile.ZIP_DEFLATED
            z.write(f, f"{name}/{f.name}", compress_type=kind)
    with open(target, "rb+") as f:
        os.fsync(f.fileno())


def release(outdir: Path, stem: str, *, case: str, requester: str, dest: Path, allow_unreviewed: bool = False,
            label_codes: bool = False, reasons: str | Path | None = None, custody: Custody | None = None) -> ReleaseResult:
    """Write the release package of `stem` (outputs in `outdir`) into `dest` (see the module's docstring), signed
    by `custody` (default: the agency's key where there is one)."""
    custody = custody or Custody.resolve()
    outdir, dest = Path(outdir), Path(dest)
    if not case or not case.strip():
        raise UserError("--case: give the case or request id")
    if not requester or not requester.strip():
        raise UserError("--requester: name the requester")
    log = read_log(outdir, stem)
    check_releasable(outdir, stem, log, allow_unreviewed, reasons, custody)
    video = outdir / f"{stem}.redacted.mp4"
    if not video.is_file():
        raise UserError(f"{video}: the redacted video is missing")
    name = package_name(case, stem)
    folder, zip_path = dest / name, dest / f"{name}.zip"
    for p in (folder, zip_path):
        if p.exists():
            raise UserError(f"{p}: already exists; a release package is never overwritten (remove it or choose another -o)")
    with writing_to(dest):
        dest.mkdir(parents=True, exist_ok=True)
        tmp, tmp_zip = partial_path(folder), partial_path(zip_path)
        shutil.rmtree(tmp, ignore_errors=True)  # left by an interrupted release of this package
        tmp_zip.unlink(missing_ok=True)
        tmp.mkdir()
        try:
            names = _fill(tmp, outdir, stem, log, video, case=case.strip(), requester=requester.strip(),
                          label_codes=label_codes, reasons=reasons, custody=custody)
            _zip(tmp, name, tmp_zip)
            os.replace(tmp, folder)
            try:
                os.replace(tmp_zip, zip_path)
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp_zip.unlink(missing_ok=True)
            raise
    return ReleaseResult(folder, zip_path, names)


def _fill(tmp: Path, outdir: Path, stem: str, log: dict, video: Path, *, case: str, requester: str,
          label_codes: bool, reasons: str | Path | None, custody: Custody) -> list[str]:
    """Write the package's files into `tmp`; return their names (manifest last)."""
    named = (log.get("audio") or {}).get("transcripts") or [f"{stem}{s}" for s in TRANSCRIPT_SUFFIXES]  # all tracks
    transcripts = [outdir / name for name in named if (outdir / name).is_file()]
    expected = log["output"]["sha256"]
    if label_codes:
        from redact.review.render import render

        work = tmp / ".render"
        work.mkdir()
        result = render(outdir, stem, reasons=_reasons_of(log, reasons), dest=work, label_codes=True, custody=custody)
        if result.audit["review"].get("decisions_sha256") != log["review"].get("decisions_sha256"):
            raise UserError(f"{stem}: the decisions changed while releasing; render and release again")
        log, video, transcripts, expected = result.audit, result.video, list(result.transcripts), result.audit["output"]["sha256"]
    out_video = tmp / f"{stem}.redacted.mp4"
    if _copy_hashed(video, out_video) != expected:
        raise UserError(f"{video}: does not match the SHA-256 in its audit log (changed after the render?); "
                        "render again before releasing")
    for f in transcripts:
        if label_codes and f.name.endswith(".transcript.json"):  # it names the video by its path in the scratch folder
            text = f.read_text(encoding="utf-8").replace(json.dumps(str(video.resolve())), json.dumps(out_video.name), 1)
            _write(tmp / f.name, text)
        else:
            _copy_hashed(f, tmp / f.name)
    if label_codes:
        shutil.rmtree(tmp / ".render")

    reviewed = log["review"].get("approved") is not None
    released = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    rows = exemption_rows(log["exemptions"], reviewed)
    _write(tmp / "exemptions.csv", exemptions_csv(rows))
    thumbs = thumbnails(out_video, thumbnail_spots(outdir, stem, log))
    signer = custody.signer
    if signer is not None:
        _write(tmp / PUBLIC_KEY, signer.public_pem)
        if SEAL in log:
            _write(tmp / LOG_SEAL, json.dumps(log[SEAL], indent=1) + "\n")
    listed = [(f.name, f.stat().st_size, sha256_file(f)) for f in sorted(tmp.iterdir())]
    ctx = report_context(log, case=case, requester=requester, released=released, rows=rows, thumbs=thumbs,
                         files=listed, label_codes=label_codes, signature=signature_fact(log, signer))
    _write(tmp / "report.html", report_html(ctx))
    _write(tmp / "report.pdf", report_pdf(ctx))
    names = sorted(f.name for f in tmp.iterdir())
    manifest = "".join(f"{sha256_file(tmp / n)}  {n}\n" for n in names).encode()
    _write(tmp / MANIFEST, manifest)
    if signer is None:
        return [*names, MANIFEST]
    _write(tmp / SIGNATURE, signer.sign(manifest) + "\n")
    return [*names, MANIFEST, SIGNATURE]
