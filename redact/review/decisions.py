"""A reviewer's decisions on a plan: what to un-redact, what to add, why, and who approved it.

`<stem>.decisions.json` (schema in the README) holds the current state and a history of every change. The
review page changes it only through `Decisions.apply`, one operation at a time; each change is appended to the
history as an entry carrying the operation, the value it replaced, who and when, the hash of the state after it
and the hash of the entry before it. The chain makes the history tamper-evident: an entry changed or removed
breaks it, and `check` refuses it. A state edited by hand or by a script (not through `apply`) is valid input:
`check` finds it differs from what the history replays to and records the difference as an outside edit.

Every decision needs a reason code from the agency's list (`load_reasons`); an unknown code is an error.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import tomllib
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import NamedTuple

from redact.errors import UserError, write_text_atomic
from redact.review.custody import Custody, digest

VERSION = 2  # 1: a track's "frames" was one [first, last]; such files are read and migrated (`migrate`)
SUFFIX = ".decisions.json"
MODES = ("blur", "pixelate", "fill")
FRAME_MODES = ("fill", "blur")
STATE_KEYS = ("version", "tracks", "regions", "frame_ranges", "words", "fixes", "speakers", "approved")
MAX_NAME = 80  # characters of a speaker's name
LIST_KEYS = {"regions": "r", "frame_ranges": "f", "words": "w", "fixes": "x"}  # list -> id prefix of its items
OPTIONAL_LISTS = ("fixes",)  # absent while empty: files (and the hashes renders recorded) from before stay as they were


class Reason(NamedTuple):
    code: str
    label: str
    statute: str


@dataclass(frozen=True)
class Reasons:
    """The agency's exemption codes, and the one automatic redactions carry until a reviewer gives another."""

    codes: dict[str, Reason]
    auto: str
    source: str  # the file they came from

    def check(self, code: object, where: str) -> str:
        if not isinstance(code, str) or code not in self.codes:
            raise UserError(f"{where}: unknown reason code {code!r} (known: {', '.join(self.codes)})")
        return code


def load_reasons(path: str | Path | None = None) -> Reasons:
    """The codes of `path` (TOML: `auto = "code"` and `[[code]]` tables with id, label, statute), or the packaged
    default list (federal FOIA (b)(6), (b)(7)(C) and common categories)."""
    source = Path(path) if path else files("redact.review") / "reasons.toml"
    try:
        data = tomllib.loads(source.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise UserError(f"{source}: cannot read reason codes: {e}") from None
    codes: dict[str, Reason] = {}
    for i, entry in enumerate(data.get("code", [])):
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str) or not entry["id"].strip():
            raise UserError(f"{source}: code #{i + 1} needs an id")
        codes[entry["id"]] = Reason(entry["id"], str(entry.get("label", entry["id"])), str(entry.get("statute", "")))
    if not codes:
        raise UserError(f"{source}: no reason codes ([[code]] tables with id, label, statute)")
    auto = data.get("auto", next(iter(codes)))
    if auto not in codes:
        raise UserError(f"{source}: auto = {auto!r} is not one of its codes")
    return Reasons(codes, auto, str(source))


def empty_state(version: int = VERSION) -> dict:
    return {"version": version, "tracks": {}, "regions": [], "frame_ranges": [], "words": [], "approved": None}


def migrate(state: dict) -> dict:
    """A version 1 state as version 2: a track's one range [a, b] becomes the list [[a, b]]. Nothing else differs."""
    tracks = {k: {**d, "frames": [d["frames"]]} if "frames" in d else d for k, d in state["tracks"].items()}
    return {**state, "version": VERSION, "tracks": tracks}


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Bounds:
    """What a decision may refer to: the plan's frames, frame size, track ids, speech duration, speakers and
    transcribed audio tracks."""

    frames: int
    width: int
    height: int
    tracks: frozenset[int]
    duration: float
    speakers: frozenset[str] = frozenset()
    audio_tracks: int = 1


class Conflict(UserError):
    """The decisions changed since the client read them (another browser, or an edit on disk)."""


def _frames(value: object, bounds: Bounds, where: str) -> list[int]:
    if (not isinstance(value, list) or len(value) != 2 or not all(isinstance(v, int) and not isinstance(v, bool)
                                                                   for v in value)):
        raise UserError(f"{where}: frames must be [first, last] (whole frame numbers)")
    a, b = value
    if a > b:
        raise UserError(f"{where}: frames [{a}, {b}] are reversed: the first frame comes after the last")
    if not 0 <= a <= b < bounds.frames:
        raise UserError(f"{where}: frames [{a}, {b}] outside the video's 0..{bounds.frames - 1}")
    return [a, b]


def _ranges(value: object, bounds: Bounds, where: str) -> list[list[int]]:
    """Frame ranges in their one written form: sorted, with overlapping or touching ranges joined, so that one
    meaning has one hash."""
    if not isinstance(value, list) or not value:
        raise UserError(f"{where}: frames must be a list of [first, last] ranges (leave it out for every frame)")
    merged: list[list[int]] = []
    for a, b in sorted(_frames(r, bounds, where) for r in value):
        if merged and a <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return merged


def _number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UserError(f"{where}: not a number: {value!r}")
    return float(value)


def _fields(item: object, required: set[str], optional: set[str], where: str) -> dict:
    if not isinstance(item, dict):
        raise UserError(f"{where}: must be an object")
    missing, unknown = required - item.keys(), item.keys() - required - optional
    if missing:
        raise UserError(f"{where}: missing {', '.join(sorted(missing))}")
    if unknown:
        raise UserError(f"{where}: unknown field {', '.join(sorted(unknown))}")
    return item


def _bool(item: dict, key: str, where: str) -> None:
    if not isinstance(item[key], bool):
        raise UserError(f"{where}: {key} must be true or false")


def validate(state: object, reasons: Reasons, bounds: Bounds) -> dict:
    """`state` checked against the schema, the reason codes and the plan; list items get ids where they have
    none (r1, f1, w1...). A version 1 state stays version 1 (its history's hashes are of that form). Raises
    UserError naming the first problem."""
    state = _fields(state, {"version"}, set(STATE_KEYS) - {"version"} | {"history"}, "decisions")
    version = state["version"]
    if version not in (1, VERSION) or isinstance(version, bool):
        raise UserError(f"decisions: version {version!r} is not 1 or {VERSION}")
    out = empty_state(version)
    tracks = state.get("tracks", {})
    if not isinstance(tracks, dict):
        raise UserError("decisions: tracks must be an object keyed by track id")
    for key, d in tracks.items():
        where = f"tracks[{key}]"
        if not str(key).isdigit() or int(key) not in bounds.tracks:
            raise UserError(f"{where}: no track {key} in the plan")
        _fields(d, {"redact", "reason"}, {"frames"}, where)
        _bool(d, "redact", where)
        entry = {"redact": d["redact"], "reason": reasons.check(d["reason"], where)}
        if "frames" in d:
            entry["frames"] = _ranges(d["frames"], bounds, where) if version > 1 else _frames(d["frames"], bounds, where)
        out["tracks"][str(int(key))] = entry
    for key, prefix in LIST_KEYS.items():
        items = state.get(key, [])
        if not isinstance(items, list):
            raise UserError(f"decisions: {key} must be a list")
        if key in OPTIONAL_LISTS:
            if not items:
                continue
            out[key] = []
        used = {i.get("id") for i in items if isinstance(i, dict)}
        counter = 0
        for n, item in enumerate(items):
            where = f"{key}[{n}]"
            item = dict(item) if isinstance(item, dict) else item
            if isinstance(item, dict) and "id" not in item:
                while f"{prefix}{counter + 1}" in used:
                    counter += 1
                counter += 1
                item["id"] = f"{prefix}{counter}"
            out[key].append(_item(key, item, reasons, bounds, where))
        ids = [i["id"] for i in out[key]]
        if len(set(ids)) != len(ids):
            raise UserError(f"decisions: {key} has two items with one id")
    speakers = state.get("speakers", {})
    if not isinstance(speakers, dict):
        raise UserError("decisions: speakers must be an object: {\"S1\": \"name\"}")
    for label, name in sorted(speakers.items()):
        where = f"speakers[{label}]"
        if label not in bounds.speakers:
            raise UserError(f"{where}: no speaker {label} in the transcript")
        if not isinstance(name, str) or not name.strip() or len(name.strip()) > MAX_NAME \
                or any(not c.isprintable() for c in name):
            raise UserError(f"{where}: the name must be 1-{MAX_NAME} printable characters")
        out.setdefault("speakers", {})[label] = name.strip()  # absent when empty: files from before stay as they were
    approved = state.get("approved")
    if approved is not None:
        _fields(approved, {"by", "at"}, set(), "approved")
        if not isinstance(approved["by"], str) or not approved["by"].strip():
            raise UserError("approved: by must name the reviewer")
        try:
            dt.datetime.fromisoformat(approved["at"])
        except (TypeError, ValueError):
            raise UserError(f"approved: at must be an ISO time, not {approved['at']!r}") from None
        out["approved"] = {"by": approved["by"].strip(), "at": approved["at"]}
    return out


def _item(key: str, item: object, reasons: Reasons, bounds: Bounds, where: str) -> dict:
    if key == "regions":
        d = _fields(item, {"id", "frames", "box", "follow", "reason"}, {"mode"}, where)
        box = _box(d["box"], bounds, where)
        _bool(d, "follow", where)
        mode = d.get("mode", "blur")
        if mode not in MODES:
            raise UserError(f"{where}: mode must be one of {', '.join(MODES)}")
        return {"id": str(d["id"]), "frames": _frames(d["frames"], bounds, where), "box": box,
                "follow": d["follow"], "mode": mode, "reason": reasons.check(d["reason"], where)}
    if key == "fixes":
        return _fix(item, bounds, where)
    if key == "frame_ranges":
        d = _fields(item, {"id", "frames", "mode", "reason"}, set(), where)
        if d["mode"] not in FRAME_MODES:
            raise UserError(f"{where}: mode must be fill or blur")
        return {"id": str(d["id"]), "frames": _frames(d["frames"], bounds, where), "mode": d["mode"],
                "reason": reasons.check(d["reason"], where)}
    d = _fields(item, {"id", "start", "end", "redact", "reason"}, {"text", "track"}, where)
    start, end = _number(d["start"], where), _number(d["end"], where)
    if not 0 <= start < end or (bounds.duration and start > bounds.duration):
        raise UserError(f"{where}: start {start} / end {end} are not a span of the audio")
    _bool(d, "redact", where)
    out = {"id": str(d["id"]), "start": start, "end": end, "redact": d["redact"], "reason": reasons.check(d["reason"], where)}
    if "text" in d:
        out["text"] = str(d["text"])
    if "track" in d:  # the audio track it bleeps or releases; absent: the first (the only one, for most videos)
        track = d["track"]
        if isinstance(track, bool) or not isinstance(track, int) or not 1 <= track <= max(1, bounds.audio_tracks):
            raise UserError(f"{where}: track must be an audio track of the video, 1..{max(1, bounds.audio_tracks)}")
        if track > 1:
            out["track"] = track
    return out


def _box(value: object, bounds: Bounds, where: str, inside: bool = True) -> list[float]:
    """[x1, y1, x2, y2], not empty, and (`inside`) within the frame."""
    if not isinstance(value, list) or len(value) != 4:
        raise UserError(f"{where}: box must be [x1, y1, x2, y2]")
    x1, y1, x2, y2 = (_number(v, where) for v in value)
    if not (x1 < x2 and y1 < y2):
        raise UserError(f"{where}: box {value} is empty (x1 < x2 and y1 < y2)")
    if inside and not (0 <= x1 and 0 <= y1 and x2 <= bounds.width and y2 <= bounds.height):
        raise UserError(f"{where}: box {value} is not inside the {bounds.width}x{bounds.height} frame")
    return [x1, y1, x2, y2]


def _fix(item: object, bounds: Bounds, where: str) -> dict:
    """A reviewer's correction of a track's boxes: keyframes, each the box the plan had at a frame (`was`) and the
    box drawn there instead (`box`), applied over `frames` (`redact.review.render.fixed_box`). No reason code: it
    changes where a redaction is, not whether."""
    d = _fields(item, {"id", "track", "frames", "keys"}, set(), where)
    track = d["track"]
    if isinstance(track, bool) or not isinstance(track, int) or track not in bounds.tracks:
        raise UserError(f"{where}: no track {track!r} in the plan")
    frames = _frames(d["frames"], bounds, where)
    keys = d["keys"]
    if not isinstance(keys, list) or not keys:
        raise UserError(f"{where}: keys must be a list of keyframes {{frame, was, box}}")
    out = []
    for n, key in enumerate(keys):
        k = _fields(key, {"frame", "was", "box"}, set(), f"{where}.keys[{n}]")
        f = k["frame"]
        if isinstance(f, bool) or not isinstance(f, int) or not frames[0] <= f <= frames[1]:
            raise UserError(f"{where}.keys[{n}]: frame {f!r} is not within frames {frames}")
        out.append({"frame": f, "was": _box(k["was"], bounds, f"{where}.keys[{n}]", inside=False),
                    "box": _box(k["box"], bounds, f"{where}.keys[{n}]")})
    out.sort(key=lambda k: k["frame"])
    if len({k["frame"] for k in out}) != len(out):
        raise UserError(f"{where}: two keyframes at one frame")
    return {"id": str(d["id"]), "track": track, "frames": frames, "keys": out}


# ------------------------------------------------------------------------------------------------ operations
def _apply(state: dict, op: dict, by: str, reasons: Reasons, bounds: Bounds) -> tuple[dict, object]:
    """The state after `op`, and the value it replaced. Every change but approval withdraws an approval."""
    new = copy.deepcopy(state)
    kind = op.get("op")
    if kind == "approve":
        previous = state["approved"]
        new["approved"] = {"by": by, "at": op.get("at") or now()}
    elif kind == "unapprove":
        previous, new["approved"] = state["approved"], None
    elif kind == "tracks":  # "merge": frames released in addition to those a release of the track holds already
        ids = [str(int(i)) for i in op.get("ids", [])]
        if not ids:
            raise UserError("tracks: no track ids")
        previous = {i: state["tracks"].get(i) for i in ids}
        for i in ids:
            value, old = op.get("value"), state["tracks"].get(i)
            if value is None:
                new["tracks"].pop(i, None)
            elif op.get("merge") and old and not old["redact"] and not value.get("redact", True) and "frames" in value:
                new["tracks"][i] = {**value, "frames": old["frames"] + value["frames"]} if "frames" in old else old
            else:
                new["tracks"][i] = value
        new["approved"] = None
    elif kind == "speakers":  # {"label": "S1", "name": "Officer Diaz"}; no name: back to the label
        previous = _name_speaker(new, op.get("label"), op.get("name"))
        new["approved"] = None
    elif kind in ("add", "remove", "replace") and op.get("list") in LIST_KEYS:
        items = new.setdefault(op["list"], [])
        if kind == "add":
            previous = None
            value = dict(op.get("value") or {})
            value.pop("id", None)
            n = 1 + max((int(i["id"][1:]) for i in items if i["id"][1:].isdigit()), default=0)
            items.append({"id": f"{LIST_KEYS[op['list']]}{n}", **value})
        else:
            at = _index(items, op.get("id"))
            if at is None:
                raise Conflict(f"{op['list']}: no item {op.get('id')!r} (removed by someone else?)")
            previous = items[at]
            if kind == "remove":
                del items[at]
            else:
                items[at] = {**dict(op.get("value") or {}), "id": op["id"]}
        new["approved"] = None
    elif kind == "undo":  # made by `Decisions.apply` from the entry it undoes: `restore` puts back what it replaced
        previous = _restore(new, op.get("restore") or {})
        if "approved" not in (op.get("restore") or {}):
            new["approved"] = None
    else:
        raise UserError(f"unknown operation {op!r}")
    return validate(new, reasons, bounds), previous


def _name_speaker(state: dict, label: str | None, name: str | None) -> str | None:
    """Name speaker `label` in `state` (in place; no name: back to the label, and no empty `speakers` kept);
    returns the name it had."""
    names = state.setdefault("speakers", {})
    previous = names.get(label)
    if name:
        names[label] = name
    else:
        names.pop(label, None)
    if not names:
        del state["speakers"]
    return previous


def _index(items: list[dict], item_id: object) -> int | None:
    """Where the item with id `item_id` is in a decisions list, if it is there."""
    return next((n for n, i in enumerate(items) if i["id"] == item_id), None)


def _inverse(entry: dict) -> dict:
    """What undoing history `entry` puts back, in a form `_restore` applies without the history (so a replay of
    the history gives the same state): the tracks' decisions, an item of a list, a speaker's name, the approval."""
    op, previous = entry["op"], entry.get("previous")
    kind = op.get("op")
    if kind in ("approve", "unapprove"):
        return {"approved": previous}
    if kind == "tracks":
        return {"tracks": previous}
    if kind == "speakers":
        return {"speaker": [op.get("label"), previous]}
    if kind == "add":
        return {"remove": [op["list"], op["id"]]}
    if kind in ("remove", "replace"):
        return {"put": [op["list"], previous]}
    raise Conflict(f"{summary(entry)}: that cannot be undone")


def _restore(state: dict, restore: dict) -> dict:
    """Apply an `_inverse` to `state` (in place); returns what it replaced, for the undo's own history entry."""
    if "approved" in restore:
        previous, state["approved"] = state["approved"], restore["approved"]
        return previous
    if "tracks" in restore:
        previous = {i: state["tracks"].get(i) for i in restore["tracks"]}
        for i, value in restore["tracks"].items():
            if value is None:
                state["tracks"].pop(i, None)
            else:
                state["tracks"][i] = value
        return previous
    if "speaker" in restore:
        return _name_speaker(state, *restore["speaker"])
    if "remove" in restore:
        key, item_id = restore["remove"]
        at = _index(state.setdefault(key, []), item_id)
        if at is None:
            raise Conflict(f"{key}: no item {item_id!r} any more")
        return state[key].pop(at)
    if "put" in restore:
        key, item = restore["put"]
        at = _index(state.setdefault(key, []), item["id"])
        if at is not None:
            previous, state[key][at] = state[key][at], item
            return previous
        state[key].append(item)
        return None
    raise UserError(f"undo: nothing to restore in {restore!r}")


@dataclass
class Decisions:
    """The decisions file of one video: its state, its history, and where it lives."""

    path: Path
    state: dict = field(default_factory=empty_state)
    history: list[dict] = field(default_factory=list)
    custody: Custody = field(default_factory=Custody)  # signs each entry appended, where the agency has a key

    @property
    def head(self) -> str:
        """The hash of the last history entry: what a client read, and what it must name to change it."""
        return self.history[-1]["hash"] if self.history else "0" * 64

    def as_json(self) -> dict:
        return {**self.state, "history": self.history}

    def save(self) -> None:
        write_text_atomic(self.path, json.dumps(self.as_json(), indent=1, ensure_ascii=False) + "\n")

    def _append(self, op: dict, by: str, previous: object, state: dict, at: str | None = None) -> dict:
        entry = {"n": len(self.history) + 1, "at": at or now(), "by": by, "op": op, "previous": previous,
                 "state": digest(state), "prev": self.head}
        entry["hash"] = digest(entry)
        self.custody.sign_entry(entry)
        self.history.append(entry)
        self.state = state
        return entry

    def apply(self, op: dict, by: str, reasons: Reasons, bounds: Bounds, base: str | None = None) -> dict:
        """Apply one operation for reviewer `by` and append it to the history; `base` is the head the client
        read: if the decisions changed since, nothing is applied (Conflict), so two browsers never silently
        overwrite each other. Returns the history entry. Save with `save`."""
        if base is not None and base != self.head:
            changes = self.changes_since(base)
            if not changes:
                raise Conflict("The decisions changed after this page read them (what it read is not in their history).")
            said = "; ".join(changes)
            raise Conflict(f"{said[0].upper()}{said[1:]}, after this page read the decisions.")
        if not isinstance(by, str) or not by.strip():
            raise UserError("every change needs the reviewer's name")
        op = {k: v for k, v in op.items() if k != "base"}
        if op.get("op") == "undo":
            target = self.undoable(by.strip())
            op = {"op": "undo", "n": target["n"], "what": summary(target), "restore": _inverse(target)}
        if op.get("op") == "approve":
            op["at"] = op.get("at") or now()  # in the operation, so replaying the history gives the same state
        state, previous = _apply(self.state, op, by.strip(), reasons, bounds)
        if op.get("op") == "add":
            op["id"] = state[op["list"]][-1]["id"]  # recorded, so the exemption log can say who added which item
        return self._append(op, by.strip(), previous, state)

    def undoable(self, by: str) -> dict:
        """The entry an undo by `by` takes back (Ctrl+Z on the page): the last change not undone yet, if it is
        theirs. Someone else's change after it must be undone by name from the decisions list, never by a key."""
        undone = {e["op"].get("n") for e in self.history if e["op"].get("op") == "undo"}
        for entry in reversed(self.history):
            if entry["op"].get("op") == "undo" or entry["n"] in undone:
                continue
            if entry["op"].get("op") in ("outside_edit", "migrate"):
                raise Conflict(f"Nothing to undo: the last change is not a reviewer's ({summary(entry)}).")
            if entry["by"] != by:
                raise Conflict(f"Nothing of yours to undo: the last change is {summary(entry)}.")
            return entry
        raise Conflict("Nothing to undo.")

    def changes_since(self, head: str | None, most: int = 5) -> list[str]:
        """What the entries after `head` did, one `summary` each (the last `most`); none when `head` is not in the
        history (nothing can be said of what was read then)."""
        at = next((n for n, e in enumerate(self.history) if e["hash"] == head), None if head != "0" * 64 else -1)
        if at is None:
            return []
        later = [summary(e) for e in self.history[at + 1:]]
        return later if len(later) <= most else [f"{len(later) - most} earlier changes", *later[-most:]]

    def changed_by(self) -> dict[str, str]:
        """Who last changed each decision, keyed "track 12", "regions r1", ...: the exemption log's reviewer."""
        out = {}
        for entry in self.history:
            op = entry["op"]
            if op.get("op") == "tracks":
                out.update({f"track {int(i)}": entry["by"] for i in op.get("ids", [])})
            elif op.get("list") in LIST_KEYS and op.get("id"):
                out[f"{op['list']} {op['id']}"] = entry["by"]
            elif op.get("op") == "outside_edit":
                out.update({target: entry["by"] for target in op["targets"]})
            elif op.get("op") == "undo":
                restore = op.get("restore", {})
                out.update({f"track {int(i)}": entry["by"] for i in restore.get("tracks", {})})
                if restore.get("put"):
                    out[f"{restore['put'][0]} {restore['put'][1]['id']}"] = entry["by"]
        return out


NOUNS = {"regions": "region", "frame_ranges": "frame range", "words": "audio span", "fixes": "box fix"}


def _ids(ids: list) -> str:
    if len(ids) == 1:
        return f"track {ids[0]}"
    return f"{len(ids)} tracks ({', '.join(map(str, ids[:3]))}{', ...' if len(ids) > 3 else ''})"


def summary(entry: dict) -> str:
    """What one history entry did, said as a clause naming who: "Bob added frame range f1"."""
    op, by = entry.get("op") or {}, entry.get("by", "someone")
    kind = op.get("op")
    if kind == "approve":
        what = "approved the decisions"
    elif kind == "unapprove":
        what = "withdrew the approval"
    elif kind == "tracks":
        value = op.get("value")
        if value is None:
            what = f"undid the decision on {_ids(op.get('ids', []))}"
        else:
            ranges = value.get("frames")
            frames = f", frames {', '.join(f'{a}-{b}' for a, b in ranges)}" if ranges else ""
            what = f"{'redacted' if value.get('redact') else 'released'} {_ids(op.get('ids', []))}{frames}"
    elif kind == "speakers":
        what = f"named speaker {op.get('label')} {op['name']!r}" if op.get("name") else f"unnamed speaker {op.get('label')}"
    elif kind in ("add", "remove", "replace"):
        verb = {"add": "added", "remove": "removed", "replace": "changed"}[kind]
        what = f"{verb} {NOUNS.get(op.get('list'), 'item')} {op.get('id', '')}"
    elif kind == "undo":
        what = f"undid change {op.get('n')} ({op.get('what', '')})"
    elif kind == "outside_edit":
        return f"the file was edited outside the page ({'; '.join(op.get('changes', []))})"
    elif kind == "migrate":
        return f"the file was migrated to schema version {op.get('to')}"
    else:
        what = f"made a change ({kind})"
    return f"{by} {what.strip()}"


def load(path: str | Path, reasons: Reasons, bounds: Bounds,
         custody: Custody | None = None) -> tuple[Decisions, list[str]]:
    """The decisions at `path` (an empty set where the file does not exist), checked against the schema, the
    codes and the plan, and their history against its chain. Returns them with the outside edits found: a
    state that is not what its history replays to gets an "outside edit" entry appended (not saved: the caller
    saves), and the list says what differs; an outside edit withdraws any approval (approving is a reviewer's act,
    recorded with a name in the history, never an edit of the file). A broken chain (an entry changed, inserted
    or removed) is refused. A version 1 file is migrated to the current version: its history is replayed as
    written, then a "migrate" entry records the change of form (made the same way at every load until saved).
    Signatures are checked by `custody` (default: the agency's key where there is one): an entry edited after it
    was signed, or unsigned while the agency signs, is refused; entries appended here are signed."""
    path = Path(path)
    custody = custody or Custody.resolve()
    if not path.exists():
        return Decisions(path, custody=custody), []
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: cannot read decisions: {e}") from None
    try:
        state = validate(raw, reasons, bounds)
    except UserError as e:
        raise UserError(f"{path}: {e}") from None
    history = raw.get("history", [])
    if not isinstance(history, list):
        raise UserError(f"{path}: history must be a list")
    migrated = any(isinstance(e, dict) and (e.get("op") or {}).get("op") == "migrate" for e in history)
    replayed = Decisions(path, empty_state(1 if migrated else state["version"]), custody=custody)
    signed = False
    for n, entry in enumerate(history):
        if not isinstance(entry, dict) or entry.get("hash") != digest({k: v for k, v in entry.items()
                                                                        if k not in ("hash", "sig")}):
            raise UserError(f"{path}: history entry {n + 1} was altered (its hash does not match)")
        signed = custody.check_entry(entry, f"{path}: history entry {n + 1}", signed)
        if entry.get("prev") != replayed.head or entry.get("n") != n + 1:
            raise UserError(f"{path}: history entry {n + 1} does not follow entry {n} (entries removed or reordered)")
        op = entry.get("op", {})
        if op.get("op") == "outside_edit":
            new = validate({**op["state"], "version": replayed.state["version"]}, reasons, bounds)
        elif op.get("op") == "migrate":
            new = migrate(replayed.state)
        else:
            new, _ = _apply(replayed.state, op, entry["by"], reasons, bounds)
        if digest(new) != entry.get("state"):
            raise UserError(f"{path}: history entry {n + 1} does not give the state it records")
        replayed.history.append(entry)
        replayed.state = new
    changes: list[str] = []
    if digest(state) != digest(replayed.state):
        changed = describe_changes(replayed.state, state)
        changes = list(changed.values())
        edited = copy.deepcopy(state)
        edited["approved"] = None  # an approval is given through the history only, and covers the state it approved
        replayed._append({"op": "outside_edit", "state": {k: v for k, v in edited.items() if k != "version"},
                          "changes": changes, "targets": list(changed)}, "outside edit", replayed.state, edited)
    if replayed.state["version"] == 1:
        if replayed.history:
            replayed._append({"op": "migrate", "from": 1, "to": VERSION}, "redact", None, migrate(replayed.state),
                             at=replayed.history[-1]["at"])
        else:
            replayed.state = migrate(replayed.state)
    return replayed, changes


def describe_changes(old: dict, new: dict) -> dict[str, str]:
    """What differs between two states: one line per change (for the history and the audit log), keyed by what
    changed as the exemption log names it ("track 12", "regions r1", "approved")."""
    out = {}
    for tid in sorted(old["tracks"].keys() | new["tracks"].keys(), key=int):
        a, b = old["tracks"].get(tid), new["tracks"].get(tid)
        if a != b:
            out[f"track {tid}"] = f"tracks[{tid}]: {json.dumps(a)} -> {json.dumps(b)}"
    for key in LIST_KEYS:
        a, b = {i["id"]: i for i in old.get(key, [])}, {i["id"]: i for i in new.get(key, [])}
        for i in sorted(a.keys() | b.keys()):
            if a.get(i) != b.get(i):
                out[f"{key} {i}"] = f"{key}[{i}]: {json.dumps(a.get(i))} -> {json.dumps(b.get(i))}"
    a, b = old.get("speakers", {}), new.get("speakers", {})
    for label in sorted(a.keys() | b.keys()):
        if a.get(label) != b.get(label):
            out[f"speaker {label}"] = f"speakers[{label}]: {json.dumps(a.get(label))} -> {json.dumps(b.get(label))}"
    if old["approved"] != new["approved"]:
        out["approved"] = f"approved: {json.dumps(old['approved'])} -> {json.dumps(new['approved'])}"
    return out


def decisions_path(outdir: Path, stem: str) -> Path:
    return outdir / f"{stem}{SUFFIX}"
