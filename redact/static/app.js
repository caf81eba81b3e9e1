// Review page: a frame-accurate player over the server's JPEG frames, the review groups, the transcript, and
// every change sent at once as one operation (with the head it was based on, so two browsers never overwrite
// each other). Plain JS, no dependencies: the page must work on an air-gapped records-office machine.
"use strict";

const TOKEN = document.querySelector('meta[name="redact-token"]').content;
const DEFAULT_REVIEWER = document.querySelector('meta[name="redact-reviewer"]').content;
// the token leaves the address bar (the cookie carries it now); the fragment (#v=<video>) stays: a reload reopens it
history.replaceState(null, "", location.pathname + location.hash);

const $ = (id) => document.getElementById(id);
const BOX_CHUNK = 250; // frames of boxes fetched at once for the outlines

const S = {
  stem: null, info: null, head: null, frame: 0, view: "preview",
  playing: false, shown: -1, loading: false, wanted: null,
  boxes: new Map(), selected: null, checked: new Set(), rowFilter: "all", rowSort: "time", drawing: false, drag: null, pending: null, anchor: null, action: null, renderTimer: null,
  zoom: { z: 1, x: 0, y: 0 }, pan: null, span: null, lanes: "row", laneDrag: null,
  open: { class: new Set(), state: new Set(["look", "confident"]) }, // the timeline's groups shown a lane a row
  reasons: {}, // the reason last given to a release and to a redaction: offered first in the next dialog of its kind
};

// ------------------------------------------------------------------------------------------------ server
async function api(path) {
  const r = await fetch(path, { credentials: "same-origin" });
  if (!r.ok) throw new Error(`${r.status}: ${await r.text()}`);
  return r.json();
}

async function post(path, body) {
  const r = await fetch(path, {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-Redact-Token": TOKEN },
    body: JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, ok: r.ok, body: r.headers.get("content-type")?.includes("json") ? JSON.parse(text) : text };
}

const vpath = (rest = "") => `/api/v/${encodeURIComponent(S.stem)}${rest}`;

function say(text, error = false) {
  const m = $("message");
  m.textContent = text;
  m.className = "message" + (error ? " error" : "");
  m.hidden = !text;
}

function reviewer() {
  const name = $("reviewer").value.trim();
  if (!name) {
    say("Enter your name as reviewer first: every change records who made it.", true);
    $("reviewer").focus();
  }
  return name;
}

// ------------------------------------------------------------------------------------------------ loading
async function loadVideos() {
  const { videos } = await api("/api/videos");
  const sel = $("video");
  sel.replaceChildren(...videos.map((v) => new Option(v, v)));
  if (!videos.length) { say("No reviewable videos in this folder (run `redact run` into it first).", true); return; }
  const wanted = new URLSearchParams(location.hash.slice(1)).get("v");
  sel.value = videos.includes(wanted) ? wanted : videos[0];
  await openVideo(sel.value);
}

async function openVideo(stem) {
  pause();
  history.replaceState(null, "", `#v=${encodeURIComponent(stem)}`);
  S.stem = stem; S.frame = 0; S.shown = -1; S.selected = null; S.checked.clear(); S.boxes.clear(); S.span = null;
  await reload();
  const v = S.info.video;
  S.audio = v.audio ? new Audio(vpath("/audio.wav")) : null;
  if (S.audio) S.audio.preload = "auto";
  S.loudness = null;
  $("audio-lane").hidden = !v.audio;
  if (v.audio) api(vpath("/loudness")).then((l) => { if (S.stem === stem) { S.loudness = l; drawAudioLane(); } }).catch(() => {});
  const overlay = $("overlay");
  overlay.width = v.width; overlay.height = v.height;
  $("stage").style.setProperty("--ar", String(v.width / v.height));
  setZoom(1);
  $("frame-no").max = v.frames - 1;
  $("frame-last").textContent = v.frames - 1;
  seek(0);
}

async function reload() {
  S.info = await api(vpath());
  S.head = S.info.head;
  S.boxes.clear();
  drawAll();
  showRender(S.info.render);
  if (S.info.outside_edits.length) say(`The decisions file was edited outside this page; recorded in its history: ${S.info.outside_edits.join("; ")}`);
}

function drawAll() {
  drawApproval(); drawGroups(); drawTimeline(); drawTranscript(); drawDecisions(); S.shown = -1; requestFrame();
}

// ------------------------------------------------------------------------------------------------ player
function frameUrl(n) {
  return vpath(`/frame/${n}.jpg?view=${S.view}&h=${S.head.slice(0, 16)}`);
}

function requestFrame() {
  if (S.loading) { S.wanted = S.frame; return; }
  if (S.shown === S.frame && $("frame").dataset.view === S.view) return;
  S.loading = true; S.wanted = null;
  const n = S.frame;
  const img = $("frame");
  img.onload = () => {
    S.loading = false; S.shown = n; img.dataset.frame = n; img.dataset.view = S.view;
    drawOverlay();
    if (S.wanted !== null && S.wanted !== S.shown) requestFrame();
  };
  img.onerror = () => { S.loading = false; say(`Frame ${n} could not be shown (see the server's messages).`, true); };
  img.src = frameUrl(n);
}

// a stored time (ISO, UTC) as the page shows it: "2026-12-06 20:39:08 UTC"
const utc = (iso) => iso.replace("T", " ").replace("+00:00", " UTC");

function clock(seconds) {
  const m = Math.floor(seconds / 60), s = seconds - 60 * m;
  return `${m}:${s.toFixed(2).padStart(5, "0")}`;
}

// frame times come only for variable-frame-rate video; constant-rate video is start + frame / fps
function timeOf(frame) { return S.info.times ? S.info.times[frame] : S.info.video.start + frame / S.info.video.fps; }

function frameAt(seconds) {
  const t = S.info.times;
  if (!t) return Math.max(0, Math.min(S.info.video.frames - 1, Math.floor((seconds - S.info.video.start) * S.info.video.fps + 1e-6)));
  let lo = 0, hi = t.length - 1;
  while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (t[mid] <= seconds) lo = mid; else hi = mid - 1; }
  return lo;
}

function seek(n) {
  const last = S.info.video.frames - 1;
  S.frame = Math.max(0, Math.min(last, Math.round(n)));
  $("frame-no").value = S.frame;
  $("time").textContent = clock(timeOf(S.frame));
  const at = tpos(S.frame + 0.5);
  $("playhead").style.left = `calc(8px + (100% - 16px - var(--sb, 0px)) * ${at})`;
  $("playhead").hidden = at < 0 || at > 1;
  markWordNow();
  requestFrame();
  drawOverlay();
}

// the sound: the original's, muted over the spans the preview bleeps; while it plays it is the clock
function bleepedAt(t) {
  return S.info.spans.some((s) => s.redact && s.start <= t && t < s.end);
}

function play() {
  if (S.playing || !S.info) return;
  if (S.frame >= S.info.video.frames - 1) seek(0);
  S.playing = true; $("play").textContent = "Pause";
  const start = S.frame, t0 = performance.now(), fps = S.info.video.fps;
  const audio = S.audio;
  if (audio) { audio.currentTime = timeOf(start); audio.play().catch(() => {}); }
  const tick = () => {
    if (!S.playing) return;
    const heard = audio && !audio.paused && audio.currentTime > 0;
    if (heard) audio.muted = S.view === "preview" && bleepedAt(audio.currentTime);
    const target = heard ? frameAt(audio.currentTime) : start + Math.floor(((performance.now() - t0) / 1000) * fps);
    if (target >= S.info.video.frames - 1) { seek(S.info.video.frames - 1); pause(); return; }
    if (target !== S.frame) seek(target); // frames the server is too slow for are dropped: only the latest is asked for
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
}

function pause() { S.playing = false; $("play").textContent = "Play"; S.audio?.pause(); }

function setView(view) {
  S.view = view;
  $("view-preview").classList.toggle("on", view === "preview");
  $("view-original").classList.toggle("on", view === "original");
  const badge = $("view-badge");
  badge.textContent = view === "preview" ? "PREVIEW (as released)" : "ORIGINAL (reviewer only)";
  badge.classList.toggle("original", view === "original");
  requestFrame(); drawOverlay();
}

// ------------------------------------------------------------------------------------------------ outlines
async function boxesAt(frame) {
  const chunk = Math.floor(frame / BOX_CHUNK);
  const key = `${S.head}:${chunk}`;
  if (!S.boxes.has(key)) {
    S.boxes.set(key, api(vpath(`/boxes?first=${chunk * BOX_CHUNK}&last=${chunk * BOX_CHUNK + BOX_CHUNK - 1}`)));
  }
  const data = await S.boxes.get(key);
  return data.frames[String(frame)] || [];
}

async function drawOverlay() {
  const c = $("overlay"), g = c.getContext("2d");
  const frame = S.frame;
  const boxes = S.view === "original" && S.info ? await boxesAt(frame) : [];
  if (frame !== S.frame) return;
  g.clearRect(0, 0, c.width, c.height);
  const px = c.width / (c.getBoundingClientRect().width || c.width); // one screen pixel in video pixels
  const lw = 2 * px;
  g.lineWidth = lw; g.font = `${Math.round(12 * px)}px system-ui, sans-serif`;
  for (const b of boxes) {
    const [x1, y1, x2, y2] = b.b;
    const sel = S.selected !== null && b.g === S.selected;
    let color = b.region ? "#b07ce8" : b.r ? "#ff4d4d" : "#3fd06a";
    if (sel) color = b.r ? "#ffd84d" : "#9dffb8";
    g.strokeStyle = color; g.setLineDash(b.r ? [] : [6, 4]);
    g.lineWidth = sel ? lw * 2 : lw;
    g.strokeRect(x1, y1, x2 - x1, y2 - y1);
    g.setLineDash([]);
    if (b.was) { // a fixed box: the detector's own box, faint, under the one the reviewer drew
      g.save(); g.strokeStyle = "rgba(255,255,255,.6)"; g.lineWidth = lw / 2; g.setLineDash([3, 3]);
      g.strokeRect(b.was[0], b.was[1], b.was[2] - b.was[0], b.was[3] - b.was[1]); g.restore();
    }
    const label = b.region ? `region ${b.region}` : `${b.c} ${b.t}${b.was ? " fixed" : ""}${b.r ? "" : " released"}`;
    const w = g.measureText(label).width + 6 * px;
    g.fillStyle = color; g.fillRect(x1, Math.max(0, y1 - 16 * px), w, 16 * px);
    g.fillStyle = "#000"; g.fillText(label, x1 + 3 * px, Math.max(12 * px, y1 - 4 * px));
  }
  if (S.view === "original" && S.info) {
    for (const r of S.info.decisions.frame_ranges) {
      if (r.frames[0] <= frame && frame <= r.frames[1]) {
        g.fillStyle = "rgba(0,0,0,.55)"; g.fillRect(0, c.height - 22, c.width, 22);
        g.fillStyle = "#fff"; g.fillText(`frame ${r.mode === "fill" ? "blacked out" : "blurred"} (${r.id}, ${r.reason})`, 6, c.height - 7);
      }
    }
  }
  if (S.drag || S.pending) {
    const [x1, y1, x2, y2] = S.drag ? dragBox() : S.pending;
    g.strokeStyle = "#ffd84d"; g.setLineDash([5, 3]); g.lineWidth = lw;
    g.strokeRect(x1, y1, x2 - x1, y2 - y1); g.setLineDash([]);
  }
}

// ------------------------------------------------------------------------------------------------ drawing regions
function toVideo(ev) {
  const c = $("overlay"), r = c.getBoundingClientRect();
  return [
    Math.max(0, Math.min(c.width, ((ev.clientX - r.left) / r.width) * c.width)),
    Math.max(0, Math.min(c.height, ((ev.clientY - r.top) / r.height) * c.height)),
  ];
}

function dragBox() {
  const { a, b } = S.drag;
  return [Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.max(a[0], b[0]), Math.max(a[1], b[1])].map(Math.round);
}

// what a drag on the frame draws: a region, or ("fix") the selected row's box as it should be
function setDrawing(on, what = "region") {
  S.drawing = on; S.drawFor = on ? what : null;
  $("draw").classList.toggle("on", on && what === "region");
  $("fix").classList.toggle("on", on && what === "fix");
  $("stage").classList.toggle("drawing", on);
  if (on) { pause(); say(what === "fix" ? "Drag the box as it should be on this frame (Esc cancels)." : "Drag on the frame to draw the region (Esc cancels)."); } else if (!S.drag) say("");
}

// Fix box: the selected row's box on this frame is the one redrawn (its track's, as the plan has it)
async function startFix() {
  if (S.drawing) { setDrawing(false); drawOverlay(); return; }
  const g = S.info.groups.find((x) => x.id === S.selected);
  const boxes = g ? (await boxesAt(S.frame)).filter((b) => b.g === g.id && !b.region) : [];
  if (!boxes.length) {
    say(g ? `${rowName(g, true)} has no box on this frame: go to a frame where it has one.` : "Select the row whose box to fix first.", true);
    return;
  }
  S.fixing = boxes[0];
  if (S.view !== "original") setView("original"); // the boxes are outlined there
  setDrawing(true, "fix");
}

const fixCovering = (track, frame) => [...(S.info.decisions.fixes || [])].reverse().find((f) => f.track === track && f.frames[0] <= frame && frame <= f.frames[1]);

function initDrawing() {
  const c = $("overlay");
  c.addEventListener("mousedown", (ev) => {
    if (!S.drawing) return;
    ev.preventDefault();
    const p = toVideo(ev);
    S.drag = { a: p, b: p };
  });
  window.addEventListener("mousemove", (ev) => {
    if (!S.drag) return;
    S.drag.b = toVideo(ev);
    drawOverlay();
  });
  window.addEventListener("mouseup", () => {
    if (!S.drag) return;
    const box = dragBox(), what = S.drawFor;
    S.drag = null; // the drag is over: a later click (on the dialog's buttons) must not start another region
    setDrawing(false);
    if (box[2] - box[0] < 4 || box[3] - box[1] < 4) { drawOverlay(); return; }
    S.pending = box;
    openAction(what === "fix" ? "fix" : "region", { box, target: S.fixing });
  });
}

// ------------------------------------------------------------------------------------------------ zoom and pan
// The frame and its overlay are one layer, scaled by `S.zoom.z` and moved by (x, y) screen pixels inside the stage;
// the frame is fetched at the video's own size, so a zoomed face is the video's pixels, not an upscaled preview.
function applyZoom(z, x, y) {
  const st = $("stage").getBoundingClientRect();
  z = Math.max(1, Math.min(8, z));
  x = Math.min(0, Math.max(st.width * (1 - z), x)); y = Math.min(0, Math.max(st.height * (1 - z), y));
  S.zoom = { z, x, y };
  $("zoom").style.transform = z === 1 ? "" : `translate(${x}px, ${y}px) scale(${z})`;
  $("stage").classList.toggle("zoomed", z > 1);
  $("zoom-badge").hidden = z === 1;
  $("zoom-badge").textContent = `${z.toFixed(1)}x · 0: whole frame`;
  drawOverlay();
}

function setZoom(z, at) {
  const st = $("stage").getBoundingClientRect();
  const { z: z0, x: x0, y: y0 } = S.zoom;
  z = Math.max(1, Math.min(8, z));
  const [ax, ay] = at || [st.width / 2, st.height / 2]; // the point under the cursor stays under it
  applyZoom(z, ax - ((ax - x0) * z) / z0, ay - ((ay - y0) * z) / z0);
}

// z: the selected row's box on this frame, large in the middle of the stage (a face decided on is a face seen)
async function zoomToSelected() {
  if (S.selected === null) { say("Select a row first (n / p, or click it)."); return; }
  const b = (await boxesAt(S.frame)).find((x) => x.g === S.selected);
  if (!b) { say("The selected row has no box on this frame: n / p go to its first frame."); return; }
  const st = $("stage").getBoundingClientRect(), k = st.width / S.info.video.width;
  const [x1, y1, x2, y2] = b.b.map((v) => v * k);
  // the box over half the stage, at least 2x where it fits (a face already large is still brought to the middle)
  const fit = Math.min(st.width / Math.max(1, x2 - x1), st.height / Math.max(1, y2 - y1));
  const z = Math.max(1, Math.min(8, fit, Math.max(2, 0.5 * fit)));
  applyZoom(z, st.width / 2 - (z * (x1 + x2)) / 2, st.height / 2 - (z * (y1 + y2)) / 2);
}

function initZoom() {
  const stage = $("stage");
  stage.addEventListener("wheel", (ev) => {
    ev.preventDefault();
    const st = stage.getBoundingClientRect();
    setZoom(S.zoom.z * Math.exp(-ev.deltaY / 400), [ev.clientX - st.left, ev.clientY - st.top]);
  }, { passive: false });
  stage.addEventListener("mousedown", (ev) => {
    if (S.drawing || S.zoom.z === 1 || ev.button !== 0) return;
    ev.preventDefault();
    S.pan = { x: ev.clientX - S.zoom.x, y: ev.clientY - S.zoom.y };
    stage.classList.add("panning");
  });
  window.addEventListener("mousemove", (ev) => {
    if (!S.pan) return;
    const st = stage.getBoundingClientRect(), z = S.zoom.z;
    S.zoom.x = Math.min(0, Math.max(st.width * (1 - z), ev.clientX - S.pan.x));
    S.zoom.y = Math.min(0, Math.max(st.height * (1 - z), ev.clientY - S.pan.y));
    $("zoom").style.transform = `translate(${S.zoom.x}px, ${S.zoom.y}px) scale(${z})`;
  });
  window.addEventListener("mouseup", () => { S.pan = null; stage.classList.remove("panning"); });
}

function setLarge(on) {
  document.body.classList.toggle("large", on);
  $("large").classList.toggle("on", on);
  localStorage.setItem("redact.large", on ? "1" : "");
  setZoom(1);
}

// ------------------------------------------------------------------------------------------------ panels
function trackDecision(id) { return S.info.decisions.tracks[String(id)]; }

function groupState(g) {
  const ds = g.tracks.map((t) => trackDecision(t.id));
  const released = ds.filter((d) => d && !d.redact);
  if (!released.length) return ds.every((d) => d && d.redact) ? "kept redacted" : "redacted";
  if (released.length === ds.length && released.every((d) => !d.frames)) return "released";
  return "partly released";
}

const decided = (g) => g.tracks.some((t) => trackDecision(t.id));

// the rows the filter shows, in the chosen order (row numbers stay those of time order)
const ROW_FILTERS = {
  all: () => true, look: (g) => g.doubts.length > 0, confident: (g) => !g.doubts.length,
  undecided: (g) => !decided(g), face: (g) => g.cls === "face", plate: (g) => g.cls === "plate",
};
// the timeline's groups of rows: each collapses into one lane; which are open is remembered per grouping
const LANE_GROUPS = {
  class: { of: (g) => g.cls, groups: [["face", "faces"], ["plate", "plates"]] },
  state: {
    of: (g) => (decided(g) ? "decided" : g.doubts.length ? "look" : "confident"),
    groups: [["look", "needs a look"], ["confident", "confident, undecided"], ["decided", "decided"]],
  },
};
const ROW_SORTS = {
  time: () => 0, score: (a, b) => a.max_score - b.max_score, size: (a, b) => (a.size ?? 0) - (b.size ?? 0),
  length: (a, b) => (a.last - a.first) - (b.last - b.first),
};

function shownGroups() {
  const rows = S.info.groups.filter(ROW_FILTERS[S.rowFilter]);
  return S.rowSort === "time" ? rows : rows.slice().sort((a, b) => ROW_SORTS[S.rowSort](a, b) || a.first - b.first);
}

function drawApproval() {
  const a = S.info.decisions.approved;
  const el = $("approval");
  const at = a ? utc(a.at) : "";
  el.textContent = a ? `approved by ${a.by}, ${at.slice(11, 16)} UTC` : "not approved"; // the date in the title: the header stays one line
  el.title = a ? `approved by ${a.by}, ${at}` : "";
  el.classList.toggle("ok", !!a);
  $("approve").textContent = a ? "Withdraw…" : "Approve…";
  $("approve").title = a ? "withdraw the approval" : "approve the decisions for release";
}

function drawGroups() {
  const list = $("groups");
  const groups = S.info.groups;
  const ids = new Set(groups.map((g) => g.id));
  for (const id of [...S.checked]) if (!ids.has(id)) S.checked.delete(id); // another video, or rows gone
  const shown = shownGroups();
  const tracks = groups.reduce((n, g) => n + g.tracks.length, 0);
  const look = groups.filter((g) => g.doubts.length).length;
  $("group-count").textContent = `${groups.length} row${groups.length === 1 ? "" : "s"}, ${tracks} track${tracks === 1 ? "" : "s"}` +
    ` · ${look} need${look === 1 ? "s" : ""} a look` + (shown.length === groups.length ? "" : ` · ${shown.length} shown`);
  const number = new Map(groups.map((g, i) => [g.id, i + 1]));
  list.replaceChildren(...shown.map((g) => {
    const li = document.createElement("li");
    li.className = "group" + (S.selected === g.id ? " sel" : "");
    li.dataset.group = g.id;
    const state = groupState(g);
    const check = document.createElement("input");
    check.type = "checkbox"; check.className = "check"; check.checked = S.checked.has(g.id);
    check.setAttribute("aria-label", `select ${rowName(g)}`);
    check.onclick = (ev) => { ev.stopPropagation(); check.checked ? S.checked.add(g.id) : S.checked.delete(g.id); drawSelection(); };
    const img = new Image(); img.loading = "lazy"; img.alt = `${g.cls} ${g.id}`;
    img.src = vpath(`/thumb/${g.best_track}.jpg`);
    const text = document.createElement("div");
    text.innerHTML = `<div class="title"></div><div class="meta"></div><span class="state"></span>`;
    text.querySelector(".title").textContent = `${number.get(g.id)}. ${rowName(g, true)}`;
    text.querySelector(".meta").textContent = `frames ${g.first}–${g.last} · ${clock(timeOf(g.first))} · ${g.tracks.length} track${g.tracks.length === 1 ? "" : "s"}${joins(g)} · ${g.detections} detections · score ${g.max_score.toFixed(2)}${g.size ? ` · ${Math.round(g.size)} px` : ""}`;
    const badge = text.querySelector(".state");
    badge.textContent = state;
    badge.className = "state" + ({ released: " released", "partly released": " partial", "kept redacted": " kept" }[state] || "");
    if (g.doubts.length) {
      const doubt = document.createElement("span");
      doubt.className = "doubt"; doubt.textContent = `needs a look: ${g.doubts.join(", ")}`;
      doubt.title = g.doubts.map((d) => DOUBTS[d]).join("; ");
      text.append(doubt);
    }
    const actions = document.createElement("div"); actions.className = "actions";
    const un = document.createElement("button");
    un.type = "button"; un.className = "unredact"; un.textContent = "Un-redact…";
    un.onclick = (ev) => { ev.stopPropagation(); selectGroup(g.id, false); openAction("untrack", { group: g }); };
    actions.append(un);
    if (state !== "redacted" && state !== "kept redacted") {
      const re = document.createElement("button");
      re.type = "button"; re.className = "reredact"; re.textContent = "Redact again…";
      re.onclick = (ev) => { ev.stopPropagation(); openAction("retrack", { group: g }); };
      actions.append(re);
    }
    li.append(check, img, text, actions);
    li.onclick = () => selectGroup(g.id, true);
    return li;
  }));
  if (!groups.length) list.innerHTML = `<li class="empty">Nothing was detected in this video.</li>`;
  else if (!shown.length) list.innerHTML = `<li class="empty">No row is shown by this filter.</li>`;
  drawSelection();
}

const DOUBTS = {  // why a row needs a look (Group.doubts), for the badge's title
  weak: "no detection scored 0.5", lone: "fewer than 3 detections",
  "joined by look": "pieces further apart than a position guess, joined because the bodies look alike: check they are one person",
};

// how the row's tracks were joined: on the same boxes (sure), one after another nearby (a guess over a gap), or
// further apart where the bodies look alike (a guess by appearance: its least similarity, 1 the same)
function joins(g) {
  const looked = g.looked.length;
  const chained = g.tracks.length - 1 - g.overlapping - looked;
  const parts = [chained && `${chained} chained`, g.overlapping && `${g.overlapping} on the same boxes`,
    looked && `${looked} by look, similarity ${Math.min(...g.looked).toFixed(2)}`].filter(Boolean);
  return parts.length ? ` (${parts.join(", ")})` : "";
}

function drawSelection() {
  const n = S.checked.size;
  $("selected-count").textContent = n ? `${n} selected` : "none selected";
  $("bulk").hidden = !n;
  const shown = shownGroups();
  $("select-shown").checked = shown.length > 0 && shown.every((g) => S.checked.has(g.id));
  $("accept-confident").disabled = !confidentUndecided().length;
}

const confidentUndecided = () => S.info.groups.filter((g) => !g.doubts.length && !decided(g));

function selectGroup(id, jump) {
  S.selected = id;
  const by = LANE_GROUPS[S.lanes], row = S.info.groups.find((x) => x.id === id);
  if (by && row && !S.open[S.lanes].has(by.of(row))) { S.open[S.lanes].add(by.of(row)); drawTimeline(); } // its lane shown
  for (const li of $("groups").children) li.classList.toggle("sel", Number(li.dataset.group) === id);
  for (const lane of $("lanes").children) {
    lane.classList.toggle("sel", Number(lane.dataset.group) === id);
    if (Number(lane.dataset.group) !== id) continue;
    const box = $("lanes"), top = lane.offsetTop, bottom = top + lane.offsetHeight; // the lane scrolled into view
    if (top < box.scrollTop) box.scrollTop = top; else if (bottom > box.scrollTop + box.clientHeight) box.scrollTop = bottom - box.clientHeight;
  }
  const li = [...$("groups").children].find((x) => Number(x.dataset.group) === id);
  li?.scrollIntoView({ block: "nearest" });
  if (jump && row && (S.frame < row.first || S.frame > row.last)) seek(row.first);
  drawOverlay();
}

// The timeline shows frames span()[0] up to span()[1]: the wheel on it zooms in time at the cursor, Shift+wheel
// (or a sideways wheel) moves along; 0 frames of video is the left edge, the whole video when not zoomed.
function span() { return S.span || [0, S.info.video.frames]; }
function tpos(frame) { const [a, b] = span(); return (frame - a) / (b - a); }

function setSpan(a, b) {
  const n = S.info.video.frames, w = Math.max(Math.min(20, n), Math.min(n, b - a));
  a = Math.max(0, Math.min(n - w, a));
  S.span = w >= n ? null : [a, a + w];
  $("timeline").classList.toggle("zoomed", S.span !== null);
  drawTimeline();
  seek(S.frame); // the playhead
}

// where the lanes' time axis is on screen: the lanes scroll when there are many rows, and the scrollbar is not time
function lanesBox() {
  const el = $("lanes"), r = el.getBoundingClientRect();
  return { left: r.left, width: el.clientWidth || r.width };
}

function timelineWheel(ev) {
  ev.preventDefault();
  const lanes = lanesBox(), [a, b] = span();
  const sideways = ev.shiftKey || Math.abs(ev.deltaX) > Math.abs(ev.deltaY);
  if (sideways) { const d = ((ev.shiftKey ? ev.deltaY : ev.deltaX) / lanes.width) * (b - a); setSpan(a + d, b + d); return; }
  const at = a + ((ev.clientX - lanes.left) / lanes.width) * (b - a), k = Math.exp(ev.deltaY / 400);
  setSpan(at - (at - a) * k, at + (b - at) * k);
}

function seg(first, last, cls, title) {
  const d = document.createElement("div");
  const [a, b] = span();
  d.className = `seg ${cls}`;
  d.style.left = `${100 * tpos(first)}%`;
  d.style.width = `max(2px, ${(100 * (last - first + 1)) / (b - a)}%)`;
  d.title = title;
  return d;
}

// a track's span on a lane, over it the frames a reviewer released, and the frames where its box was fixed by hand
// (a tick at each frame it was drawn on)
function trackSegs(lane, g, t, name) {
  lane.append(seg(t.first, t.last, g.cls === "plate" ? "plate" : "", `${name}: frames ${t.first}–${t.last}`));
  const d = trackDecision(t.id);
  if (d && !d.redact) {
    for (const [a, b] of d.frames || [[t.first, t.last]]) {
      const [x, y] = [Math.max(a, t.first), Math.min(b, t.last)];
      if (x <= y) lane.append(seg(x, y, "released", `track ${t.id} released, frames ${x}–${y} (${d.reason})`));
    }
  }
  for (const f of (S.info.decisions.fixes || []).filter((x) => x.track === t.id)) {
    const drawn = f.keys.map((k) => k.frame).join(", ");
    lane.append(seg(f.frames[0], f.frames[1], "fixed", `box fix ${f.id} of track ${t.id}: frames ${f.frames[0]}–${f.frames[1]}, drawn on ${drawn}`));
    for (const k of f.keys) {
      const tick = seg(k.frame, k.frame, "key", `box fix ${f.id}: drawn on frame ${k.frame}`);
      tick.style.left = `calc(${100 * tpos(k.frame + 0.5)}% - 1.5px)`; // on the frame's middle, however zoomed
      tick.style.width = "";
      lane.append(tick);
    }
  }
}

// A drag along a row's lane marks a span of frames (shown while dragging) and opens the un-redact dialog for it.
function frameOnTimeline(clientX) {
  const lanes = lanesBox(), [a, b] = span();
  return Math.floor(a + Math.max(0, Math.min(0.9999, (clientX - lanes.left) / lanes.width)) * (b - a));
}

function initLaneDrag() {
  $("timeline").addEventListener("mousedown", (ev) => {
    const lane = ev.target.closest(".lane");
    if (ev.button !== 0 || !lane?.dataset.group) return;
    S.laneDrag = { lane, group: Number(lane.dataset.group), x: ev.clientX, from: frameOnTimeline(ev.clientX), moved: false, mark: null };
  });
  window.addEventListener("mousemove", (ev) => {
    const d = S.laneDrag;
    if (!d || ev.buttons !== 1 || (!d.moved && Math.abs(ev.clientX - d.x) < 5)) return;
    d.moved = true;
    const to = frameOnTimeline(ev.clientX), [x, y] = [Math.min(d.from, to), Math.max(d.from, to)];
    d.mark?.remove();
    d.mark = seg(x, y, "marking", `frames ${x}–${y}`);
    d.lane.append(d.mark);
  });
  window.addEventListener("mouseup", (ev) => {
    const d = S.laneDrag;
    if (!d?.moved) { S.laneDrag = null; return; }
    d.mark?.remove();
    const g = S.info.groups.find((x) => x.id === d.group), to = frameOnTimeline(ev.clientX);
    const frames = [Math.max(g.first, Math.min(d.from, to)), Math.min(g.last, Math.max(d.from, to))];
    if (!ev.target.closest("#timeline")) S.laneDrag = null; // no click follows a drag that ends off the timeline
    selectGroup(g.id, false);
    seek(frames[0]);
    openAction("untrack", { group: g, frames });
  });
}

// The audio lane: the original sound's loudness over the timeline's span, under the spans the release bleeps (red)
// and those a reviewer released (green): where someone speaks and nothing is bleeped is where to listen.
function drawAudioLane() {
  const c = $("audio-lane");
  if (c.hidden || !S.info) return;
  const w = Math.max(1, Math.round(c.clientWidth * devicePixelRatio)), h = c.height;
  if (c.width !== w) c.width = w;
  const g = c.getContext("2d"), [a, b] = span(), t0 = timeOf(a), t1 = timeOf(b - 1) + 1 / S.info.video.fps;
  const x = (t) => ((t - t0) / (t1 - t0)) * w;
  g.clearRect(0, 0, w, h);
  for (const sp of S.info.spans) {
    g.fillStyle = sp.redact ? "rgba(217, 83, 79, .55)" : "rgba(58, 165, 91, .55)";
    g.fillRect(x(sp.start), 0, Math.max(1, x(sp.end) - x(sp.start)), h);
  }
  if (!S.loudness) return;
  const { step, peaks } = S.loudness;
  g.fillStyle = "#9fb3c8";
  for (let px = 0; px < w; px++) {
    const i0 = Math.floor((t0 + (px / w) * (t1 - t0)) / step), i1 = Math.max(i0 + 1, Math.ceil((t0 + ((px + 1) / w) * (t1 - t0)) / step));
    let peak = 0;
    for (let i = i0; i < i1 && i < peaks.length; i++) peak = Math.max(peak, peaks[i]);
    const bar = Math.max(peak ? 1 : 0, (peak / 100) * h);
    g.fillRect(px, (h - bar) / 2, 1, bar);
  }
}

function drawTimeline() {
  const [a, b] = span(), t0 = timeOf(a), t1 = timeOf(b - 1) + 1 / S.info.video.fps;
  const ruler = $("ruler");
  const step = [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800].find((s) => (t1 - t0) / s <= 10) || 3600;
  ruler.replaceChildren();
  for (let t = Math.ceil(t0 / step - 1e-9) * step; t <= t1; t += step) {
    const s = document.createElement("span"); s.style.left = `${(100 * (t - t0)) / (t1 - t0)}%`; s.textContent = clock(t).replace(/\.00$/, "");
    ruler.append(s);
  }
  const lanes = [], rows = S.info.groups.filter(ROW_FILTERS[S.rowFilter]); // the rows the list shows, in time order
  const rowLane = (g) => {
    const lane = document.createElement("div");
    lane.className = "lane" + (S.selected === g.id ? " sel" : ""); lane.dataset.group = g.id;
    for (const t of g.tracks) trackSegs(lane, g, t, `${g.cls} track ${t.id}`);
    const label = document.createElement("span"); label.className = "label"; label.textContent = `${g.cls} ${g.id}`;
    lane.append(label);
    return lane;
  };
  const by = LANE_GROUPS[S.lanes];
  if (!by) lanes.push(...rows.map(rowLane));
  else for (const [key, name] of by.groups) { // a group's lane holds all its rows' tracks; opened, its rows follow
    const members = rows.filter((g) => by.of(g) === key);
    if (!members.length) continue;
    const open = S.open[S.lanes].has(key);
    const lane = document.createElement("div");
    lane.className = "lane head"; lane.dataset.key = key;
    for (const g of members) for (const t of g.tracks) trackSegs(lane, g, t, `${g.cls} row ${g.id}, track ${t.id}`);
    const toggle = document.createElement("button");
    toggle.type = "button"; toggle.className = "label toggle";
    toggle.textContent = `${open ? "▾" : "▸"} ${name} (${members.length} row${members.length === 1 ? "" : "s"})`;
    toggle.title = open ? "collapse these rows into this lane" : "show these rows a lane each";
    toggle.onclick = (ev) => { ev.stopPropagation(); S.open[S.lanes][open ? "delete" : "add"](key); drawTimeline(); };
    lane.append(toggle);
    lanes.push(lane);
    if (open) lanes.push(...members.map(rowLane));
  }
  const extra = (items, cls, name) => {
    if (!items.length) return;
    const lane = document.createElement("div"); lane.className = "lane";
    for (const r of items) lane.append(seg(r.frames[0], r.frames[1], cls, `${name} ${r.id}: frames ${r.frames[0]}–${r.frames[1]} (${r.reason})`));
    const label = document.createElement("span"); label.className = "label"; label.textContent = name;
    lane.append(label);
    lanes.push(lane);
  };
  extra(S.info.decisions.regions, "region", "regions");
  extra(S.info.decisions.frame_ranges, "range", "frames out");
  $("lanes").replaceChildren(...lanes);
  const sb = $("lanes").offsetWidth - $("lanes").clientWidth; // the ruler and the playhead leave the scrollbar out
  $("timeline").style.setProperty("--sb", `${sb}px`);
  drawAudioLane();
}

function wordSpan(i) {
  // the span (automatic or a reviewer's) that holds word i, if any
  return S.info.spans.find((s) => s.words[0] <= i && i < s.words[1]);
}

function drawTranscript() {
  const box = $("transcript");
  if (!S.info.words.length) { box.innerHTML = `<span class="empty">No speech was transcribed.</span>`; return; }
  const names = S.info.decisions.speakers || {};
  const several = S.info.words.some((w) => w.track > 1);
  box.replaceChildren(...S.info.words.flatMap((w, k) => {
    const turn = [];
    if (several && (k === 0 || S.info.words[k - 1].track !== w.track)) {
      // each audio track's words follow the last track's: a heading where a track starts
      turn.push(Object.assign(document.createElement("div"), { className: "audio-track", textContent: `Audio track ${w.track}` }));
    }
    if (w.speaker && (k === 0 || S.info.words[k - 1].speaker !== w.speaker || S.info.words[k - 1].track !== w.track)) {
      // a chip at each change of speaker; named by the reviewer (the release shows the name) or the label
      const chip = document.createElement("button");
      chip.type = "button"; chip.className = "speaker" + (names[w.speaker] ? " named" : "");
      chip.dataset.speaker = w.speaker;
      chip.textContent = names[w.speaker] || w.speaker;
      chip.title = names[w.speaker] ? `${w.speaker}, named by a reviewer: click to rename` : "Click to name this speaker";
      chip.onclick = () => openAction("speaker", { label: w.speaker });
      if (k && !turn.length) turn.push(Object.assign(document.createElement("span"), { className: "turn" }));
      turn.push(chip);
    }
    const el = document.createElement("span");
    el.className = "word"; el.dataset.i = w.i;
    el.textContent = w.word.trim();
    const span = wordSpan(w.i);
    if (span) {
      el.classList.add(span.source === "manual" ? "manual" : span.redact ? "bleeped" : "released");
      el.title = span.source === "manual" ? `bleeped by a reviewer (${span.reason})`
        : span.redact ? `bleeped automatically: ${span.category}` : `${span.category}, released (${span.reason})`;
    }
    el.onclick = (ev) => wordClicked(w.i, ev.shiftKey);
    return [...turn, el, document.createTextNode(" ")];
  }));
  markWordNow();
}

function markWordNow() {
  if (!S.info) return;
  const t = timeOf(S.frame);
  for (const el of $("transcript").querySelectorAll(".word")) {
    const w = S.info.words[Number(el.dataset.i)];
    el.classList.toggle("now", w.start <= t && t < w.end);
  }
}

function wordClicked(i, shift) {
  const span = wordSpan(i);
  pause();
  seek(frameAt(S.info.words[i].start));
  if (span && span.source === "auto" && span.redact) return openAction("release-span", { span });
  if (span && span.id) return openAction("remove", { list: "words", id: span.id, what: span.source === "manual" ? "the bleep" : "the release" });
  const extend = shift && S.anchor !== null && S.info.words[S.anchor].track === S.info.words[i].track;  // one track
  const a = extend ? Math.min(S.anchor, i) : i;
  const b = extend ? Math.max(S.anchor, i) : i;
  S.anchor = i;
  openAction("bleep", { i: a, j: b });
}

// a decision is made on a row (one operation on all its tracks): it is shown as one line per row (and per decision,
// where a row's tracks differ, as after an edit by hand)
function rowDecisions(tracks) {
  const rowOf = new Map(S.info.groups.flatMap((g) => g.tracks.map((t) => [String(t.id), g])));
  const lines = new Map();
  for (const [id, t] of Object.entries(tracks)) {
    const g = rowOf.get(id);
    const key = `${g.id} ${JSON.stringify(t)}`;
    if (!lines.has(key)) lines.set(key, { g, t, ids: [] });
    lines.get(key).ids.push(Number(id));
  }
  return [...lines.values()];
}

function rowName(g, capital = false) {
  return `${capital ? g.cls[0].toUpperCase() + g.cls.slice(1) : g.cls} row ${g.id}`;
}

function trackCount(g, ids) {
  if (g.tracks.length === 1) return "";
  return ids.length === g.tracks.length ? ` (${ids.length} tracks)` : ` (${ids.length} of its ${g.tracks.length} tracks)`;
}

function drawDecisions() {
  const d = S.info.decisions;
  $("history").textContent = `${S.info.history} change${S.info.history === 1 ? "" : "s"} in the history`;
  const items = [];
  const add = (text, reason, buttons) => {
    const li = document.createElement("li");
    const what = document.createElement("span"); what.className = "what"; what.textContent = text;
    const code = document.createElement("code"); code.textContent = reason;
    li.append(what, code, ...buttons);
    items.push(li);
  };
  const button = (label, fn) => { const b = document.createElement("button"); b.type = "button"; b.textContent = label; b.onclick = fn; return b; };
  const lines = rowDecisions(d.tracks);
  // rows kept redacted in one step (accepted) are one line per reason, not a line per row
  const kept = new Map();
  for (const line of lines) {
    if (line.t.redact && !line.t.frames && line.ids.length === line.g.tracks.length) {
      if (!kept.has(line.t.reason)) kept.set(line.t.reason, []);
      kept.get(line.t.reason).push(line);
    }
  }
  for (const [reason, rows] of kept) {
    if (rows.length < 2) { kept.delete(reason); continue; }
    const ids = rows.flatMap((r) => r.ids);
    add(`${rows.length} rows kept redacted, all frames (${rows.map((r) => r.g.id).join(", ")})`, reason,
      [button("Undo", () => openAction("untrack-undo", { rows: rows.map((r) => r.g), ids }))]);
  }
  const keptLines = new Set([...kept.values()].flat());
  for (const { g, t, ids } of lines.filter((line) => !keptLines.has(line))) {
    const frames = t.frames ? `frames ${t.frames.map(([a, b]) => `${a}–${b}`).join(", ")}` : "all frames";
    add(`${rowName(g, true)}${trackCount(g, ids)} ${t.redact ? "redacted" : "released"}, ${frames}`, t.reason,
      [button("Go", () => selectGroup(g.id, true)), button("Undo", () => openAction("untrack-undo", { g, ids }))]);
  }
  for (const r of d.regions) {
    add(`Region ${r.id}: ${r.mode}, ${r.follow ? "followed" : "static"}, frames ${r.frames[0]}–${r.frames[1]}`, r.reason,
      [button("Go", () => seek(r.frames[0])), button("Remove", () => openAction("remove", { list: "regions", id: r.id, what: `region ${r.id}` }))]);
  }
  for (const f of d.fixes || []) {
    const g = S.info.groups.find((x) => x.tracks.some((t) => t.id === f.track));
    add(`Box of ${g ? rowName(g) : "track"} (track ${f.track}) fixed, frames ${f.frames[0]}–${f.frames[1]}, ${f.keys.length} keyframe${f.keys.length === 1 ? "" : "s"} (${f.id})`, "",
      [button("Go", () => { if (g) selectGroup(g.id, false); seek(f.keys[0].frame); }), button("Remove", () => openAction("remove", { list: "fixes", id: f.id, what: `box fix ${f.id}` }))]);
  }
  for (const r of d.frame_ranges) {
    add(`Frames ${r.frames[0]}–${r.frames[1]} ${r.mode === "fill" ? "blacked out" : "blurred"} (${r.id})`, r.reason,
      [button("Go", () => seek(r.frames[0])), button("Remove", () => openAction("remove", { list: "frame_ranges", id: r.id, what: `frames ${r.id}` }))]);
  }
  for (const w of d.words) {
    add(`Audio${w.track ? ` track ${w.track}` : ""} ${w.start.toFixed(2)}–${w.end.toFixed(2)} s ${w.redact ? "bleeped" : "released"}${w.text ? ` “${w.text}”` : ""} (${w.id})`, w.reason,
      [button("Remove", () => openAction("remove", { list: "words", id: w.id, what: `audio ${w.id}` }))]);
  }
  for (const [label, name] of Object.entries(d.speakers || {})) {
    add(`Speaker ${label} named “${name}” in the release`, "",
      [button("Rename", () => openAction("speaker", { label }))]);
  }
  if (!items.length) {
    const li = document.createElement("li"); li.className = "empty"; li.textContent = "No decisions yet: the automatic redactions stand.";
    items.push(li);
  }
  $("decisions").replaceChildren(...items);
  $("log").replaceChildren(...S.info.log.slice().reverse().map((e) => { // newest first, as numbered in the history
    const li = document.createElement("li");
    li.value = e.n;
    li.textContent = `${utc(e.at)}: ${e.what}`;
    return li;
  }));
}

// ------------------------------------------------------------------------------------------------ actions
const MODES = { region: ["blur", "pixelate", "fill"], blackout: ["fill", "blur"] };

function openAction(kind, ctx) {
  if (!reviewer()) { S.pending = null; drawOverlay(); return; }
  pause();
  S.action = { kind, ctx };
  const last = S.info.video.frames - 1;
  const show = (id, on) => { $(id).hidden = !on; };
  let title = "", text = "", frames = null, whole = false, mode = null, reason = true, follow = false;
  if (kind === "untrack") {
    const g = ctx.group;
    title = `Un-redact ${rowName(g)}`;
    text = `Release ${g.tracks.length === 1 ? "track" : `its ${g.tracks.length} tracks`} ${g.tracks.map((t) => t.id).join(", ")} unredacted: the whole row, or the frames you give (drag along its lane on the timeline to mark them; frames released before stay released).`;
    frames = ctx.frames || fromHere(g); whole = !ctx.frames;
  } else if (kind === "bulk") {
    const n = ctx.groups.length, tracks = ctx.groups.reduce((k, g) => k + g.tracks.length, 0);
    const rows = `${n} row${n === 1 ? "" : "s"} (${tracks} track${tracks === 1 ? "" : "s"})`;
    title = ctx.accept ? "Accept the confident rows" : ctx.redact ? "Keep the selected rows redacted" : "Un-redact the selected rows";
    text = ctx.accept ? `Keep ${rows} redacted, every one scored 0.5 or more in 3 or more detections and none decided yet: one decision, one reason.`
      : ctx.redact ? `Keep ${rows} redacted in every frame, with one reason.` : `Release ${rows} unredacted in every frame, with one reason.`;
  } else if (kind === "retrack") {
    title = `Redact ${rowName(ctx.group)} again`;
    text = "Redact every frame of the row again, with this reason.";
  } else if (kind === "untrack-undo") {
    title = ctx.rows ? `Undo the decision on ${ctx.rows.length} rows` : `Undo the decision on ${rowName(ctx.g)}`;
    text = `Back to the automatic redaction${ctx.ids.length > 1 ? ` for ${ctx.rows ? "their" : "its"} ${ctx.ids.length} tracks` : ""}.`; reason = false;
  } else if (kind === "region") {
    title = "Redact a drawn region";
    text = `Box ${ctx.box.join(", ")} (pixels), from the current frame to the frame you choose.`;
    frames = [S.frame, Math.min(last, S.frame + Math.round(2 * S.info.video.fps))]; mode = MODES.region; follow = true;
  } else if (kind === "fix") {
    const t = ctx.target, g = S.info.groups.find((x) => x.id === t.g), tr = g.tracks.find((x) => x.id === t.t);
    const existing = fixCovering(t.t, S.frame);
    title = `Fix the box of ${rowName(g)}`;
    text = `Track ${t.t} at frame ${S.frame}: [${ctx.box.join(", ")}] instead of [${(t.was || t.b).map(Math.round).join(", ")}]. ` +
      `The fix moves and scales with the detected box over the frames below${existing ? `; it is a keyframe of fix ${existing.id} (interpolated between keyframes)` : ""}.`;
    frames = existing ? existing.frames : [tr.first, tr.last]; reason = false;
  } else if (kind === "blackout") {
    title = "Black out frames"; text = "Hide whole frames, from the current frame to the frame you choose.";
    frames = [S.frame, Math.min(last, S.frame + Math.round(S.info.video.fps))]; mode = MODES.blackout;
  } else if (kind === "bleep") {
    const ws = S.info.words.slice(ctx.i, ctx.j + 1);
    title = "Bleep speech"; text = `“${ws.map((w) => w.word.trim()).join(" ")}” (${ws[0].start.toFixed(2)}–${ws[ws.length - 1].end.toFixed(2)} s${ws[0].track > 1 ? `, audio track ${ws[0].track}` : ""})`;
  } else if (kind === "release-span") {
    const ws = S.info.words.slice(ctx.span.words[0], ctx.span.words[1]);
    title = `Release an automatic bleep (${ctx.span.category})`;
    text = `Un-bleep “${ws.map((w) => w.word.trim()).join(" ")}”: it will be heard in the release.`;
  } else if (kind === "remove") {
    title = `Remove ${ctx.what}`; text = "Back to what the plan and the other decisions say."; reason = false;
  } else if (kind === "speaker") {
    const name = (S.info.decisions.speakers || {})[ctx.label];
    title = `Name speaker ${ctx.label}`;
    text = `The released transcripts say this name wherever ${ctx.label} speaks; the run's own transcripts keep ${ctx.label}. Leave it empty to go back to ${ctx.label}.`;
    reason = false; $("action-name").value = name || "";
  } else if (kind === "release") {
    title = "Release package";
    text = "Write the release package of the last render: the redacted video, transcripts, exemption log, report and signed manifest, as a folder and a zip. The decisions must be approved and rendered.";
    reason = false;
  } else if (kind === "approve") {
    const approved = S.info.decisions.approved;
    title = approved ? "Withdraw approval" : "Approve the decisions";
    text = approved ? `Withdraw ${approved.by}'s approval.` : `Approve the decisions as ${$("reviewer").value.trim()}: they are ready for release. Any later change withdraws the approval.`;
    reason = false;
  }
  $("action-title").textContent = title;
  $("action-text").textContent = text;
  show("action-frames", !!frames);
  if (frames) {
    $("action-first").value = frames[0]; $("action-last").value = frames[1];
    $("action-first").max = $("action-last").max = last;
  }
  show("action-whole-label", whole);
  $("action-whole").checked = whole;
  syncWhole();
  show("action-region", follow);
  $("action-follow").checked = false;
  show("action-mode-row", !!mode);
  if (mode) $("action-mode").replaceChildren(...mode.map((m) => new Option(m, m)));
  show("action-name-row", kind === "speaker");
  show("action-package-row", kind === "release");
  show("action-reason-row", reason);
  const codes = S.info.reasons.map((r) => new Option(`${r.code} — ${r.label}${r.statute ? ` (${r.statute})` : ""}`, r.code));
  $("action-reason").replaceChildren(new Option("— choose a reason code —", ""), ...codes);
  $("action-reason").value = S.reasons[releasing()] || "";
  $("action-error").hidden = true;
  $("action-ok").textContent = { approve: S.info.decisions.approved ? "Withdraw" : "Approve", release: "Release" }[kind] || "Save";
  $("action").showModal();
}

// "whole track" and a frame range exclude each other: typing a frame unticks it, ticking it shows the row's range
function syncWhole() {
  const { kind, ctx } = S.action;
  if (kind !== "untrack") return;
  const g = ctx.group, frames = $("action-whole").checked ? [g.first, g.last] : ctx.frames || fromHere(g);
  $("action-first").value = frames[0]; $("action-last").value = frames[1];
}

// a row's frames from the current one (within the row) to its last: what a partial un-redaction offers first
function fromHere(g) { return [Math.max(g.first, Math.min(S.frame, g.last)), g.last]; }

// whether the open dialog releases (un-redacts, un-bleeps) or redacts: each kind of decision offers its last reason
function releasing() {
  const { kind, ctx } = S.action;
  return kind === "untrack" || kind === "release-span" || (kind === "bulk" && !ctx.redact) ? "release" : "redact";
}

function operation() {
  const { kind, ctx } = S.action;
  const reason = $("action-reason").value;
  const frames = [Number($("action-first").value), Number($("action-last").value)];
  switch (kind) {
    case "untrack": {
      const value = { redact: false, reason };
      if (!$("action-whole").checked) value.frames = [frames];
      // merge: frames released before stay released (a row is often released in several pieces)
      return { op: "tracks", ids: ctx.group.tracks.map((t) => t.id), value, merge: true };
    }
    case "bulk": return { op: "tracks", ids: ctx.groups.flatMap((g) => g.tracks.map((t) => t.id)), value: { redact: ctx.redact, reason } };
    case "retrack": return { op: "tracks", ids: ctx.group.tracks.map((t) => t.id), value: { redact: true, reason } };
    case "untrack-undo": return { op: "tracks", ids: ctx.ids, value: null };
    case "region": return { op: "add", list: "regions", value: { frames, box: ctx.box, follow: $("action-follow").checked, mode: $("action-mode").value, reason } };
    case "fix": {
      const t = ctx.target, existing = fixCovering(t.t, S.frame);
      const key = { frame: S.frame, was: t.was || t.b, box: ctx.box };
      const keys = existing ? [...existing.keys.filter((k) => k.frame !== S.frame), key] : [key];
      const value = { track: t.t, frames, keys };
      return existing ? { op: "replace", list: "fixes", id: existing.id, value } : { op: "add", list: "fixes", value };
    }
    case "blackout": return { op: "add", list: "frame_ranges", value: { frames, mode: $("action-mode").value, reason } };
    case "bleep": {
      const ws = S.info.words.slice(ctx.i, ctx.j + 1);
      return { op: "add", list: "words", value: { start: ws[0].start, end: ws[ws.length - 1].end, redact: true, reason, track: ws[0].track, text: ws.map((w) => w.word.trim()).join(" ") } };
    }
    case "release-span": {
      const ws = S.info.words.slice(ctx.span.words[0], ctx.span.words[1]);
      const start = ws.length ? ws[0].start : ctx.span.start, end = ws.length ? ws[ws.length - 1].end : ctx.span.end;
      return { op: "add", list: "words", value: { start, end, redact: false, reason, track: ctx.span.track, text: ws.map((w) => w.word.trim()).join(" ") } };
    }
    case "remove": return { op: "remove", list: ctx.list, id: ctx.id };
    case "speaker": return { op: "speakers", label: ctx.label, name: $("action-name").value.trim() || null };
    case "approve": return { op: S.info.decisions.approved ? "unapprove" : "approve" };
  }
  throw new Error(kind);
}

async function submitAction(ev) {
  ev.preventDefault();
  const by = reviewer();
  if (!by) return;
  if (!$("action-reason-row").hidden && !$("action-reason").value) {
    $("action-error").textContent = "Choose the reason code for this decision."; $("action-error").hidden = false; return;
  }
  if (S.action.kind === "release") { await releasePackage(); return; }
  if (!$("action-reason-row").hidden) S.reasons[releasing()] = $("action-reason").value;
  const op = operation();
  S.busy = true; // the watch must not take this page's own change for another's
  try { await send(op, by); } finally { S.busy = false; }
}

async function send(op, by) {
  const r = await post(vpath("/decisions"), { ...op, base: S.head, by });
  if (r.status === 409) {
    $("action").close();
    await reload();
    say(`Not saved: ${r.body} Look at the decisions again and redo the change if it is still needed.`, true);
    return;
  }
  if (!r.ok) { $("action-error").textContent = typeof r.body === "string" ? r.body : JSON.stringify(r.body); $("action-error").hidden = false; return; }
  $("action").close();
  if (op.op === "tracks") S.checked.clear();
  await reload();
  say(`Saved (${op.op}${op.list ? ` ${op.list}` : ""}) by ${by}.`);
}

// Ctrl+Z: the server takes back this reviewer's last change, if it is still the last one (someone else's change
// after it is undone by name from the decisions list); again, the one before it
async function undo() {
  const by = reviewer();
  if (!by) return;
  // a change still being saved is the one to undo: wait for it, or the undo would be refused as after a stale read
  while (S.busy) await new Promise((done) => setTimeout(done, 50));
  S.busy = true;
  let r;
  try { r = await post(vpath("/decisions"), { op: "undo", base: S.head, by }); } finally { S.busy = false; }
  await reload();
  if (r.ok) say(`Undone: ${r.body.change.replace(/^.*? undid /, "")}. Ctrl+Z again undoes your change before it.`);
  else say(`Not undone: ${typeof r.body === "string" ? r.body : JSON.stringify(r.body)}`, true);
}

// ------------------------------------------------------------------------------------------------ other reviewers
// every couple of seconds the page asks for the decisions' head; when someone else changed them it shows the new
// state and says who changed what (while a dialog is open it waits: a save from it is refused and says so)
const WATCH_MS = 2000;

function watch() {
  clearTimeout(S.watchTimer);
  S.watchTimer = setTimeout(async () => {
    try {
      if (S.info && !S.busy && !$("action").open) {
        const seen = S.head;
        const r = await api(vpath(`/head?since=${seen}`));
        if (r.head !== seen && S.head === seen && !S.busy && !$("action").open) {
          const approved = S.info.decisions.approved;
          await reload();
          const lost = approved && !S.info.decisions.approved ? ` ${approved.by}'s approval is withdrawn.` : "";
          const what = r.changes.length ? r.changes.join("; ") : "the decisions were changed elsewhere";
          say(`${what[0].toUpperCase()}${what.slice(1)}.${lost}`);
        }
      }
    } catch (e) { /* the server restarting, or the network: the next look tries again */ }
    watch();
  }, WATCH_MS);
}

// ------------------------------------------------------------------------------------------------ release
async function releasePackage() {
  const caseId = $("action-case").value.trim(), requester = $("action-requester").value.trim();
  const fail = (text) => { $("action-error").textContent = text; $("action-error").hidden = false; };
  if (!caseId || !requester) { fail("Give the case or request id and the requester's name."); return; }
  $("action-ok").disabled = true;
  try {
    const r = await post(vpath("/release"), { case: caseId, requester });
    if (!r.ok) { fail(typeof r.body === "string" ? r.body : JSON.stringify(r.body)); return; }
    $("action").close();
    say(`Released ${r.body.files} files: ${r.body.zip}` + (r.body.key ? ` (signed with key ${r.body.key.slice(0, 16)}).` : " (unsigned: this agency has no key)."));
  } finally { $("action-ok").disabled = false; }
}

// ------------------------------------------------------------------------------------------------ render
async function startRender() {
  const r = await post(vpath("/render"), {});
  if (!r.ok) { say(`Render: ${typeof r.body === "string" ? r.body : JSON.stringify(r.body)}`, true); return; }
  showRender(r.body);
  pollRender();
}

// whether the release files are up to date is the server's to say (the render's log against the decisions now)
function showRender(st) {
  const bar = $("render-progress");
  bar.max = Math.max(1, st.total); bar.value = st.done;
  const busy = st.state === "running" || st.state === "failed";
  const state = busy ? st.state : S.info.rendered.current ? "done" : "needed";
  const text = { running: `rendering ${st.done} / ${st.total} frames`, failed: `render failed: ${st.error}`,
    done: "rendered: up to date", needed: "render needed: decisions changed" }[state];
  $("render-state").textContent = text;
  $("render-state").dataset.state = state;
  bar.hidden = st.state !== "running"; // room for what the state says: the header stays one line at 1366 px
  $("render-state").title = S.info.rendered.at ? `last render ${utc(S.info.rendered.at)}` : "";
  $("render").disabled = st.state === "running";
}

function pollRender() {
  clearTimeout(S.renderTimer);
  S.renderTimer = setTimeout(async () => {
    const st = await api(vpath("/render"));
    if (st.state === "running") { showRender(st); pollRender(); return; }
    await reload(); // the log the render wrote says what it rendered
    if (st.state === "done") say(`Rendered ${S.stem}.redacted.mp4 from the plan and the decisions.`);
    else if (st.state === "failed") say(`Render failed: ${st.error}`, true);
  }, 400);
}

// ------------------------------------------------------------------------------------------------ wiring
function typing(ev) {
  const t = ev.target;
  return $("action").open || (t instanceof HTMLElement && (t.isContentEditable || ["INPUT", "SELECT", "TEXTAREA"].includes(t.tagName)));
}

function stepGroup(dir) {
  const groups = shownGroups();
  if (!groups.length) return;
  let i = groups.findIndex((g) => g.id === S.selected);
  if (i < 0) i = dir > 0 ? groups.findIndex((g) => g.first >= S.frame) - 1 : groups.length;
  i = Math.max(0, Math.min(groups.length - 1, i + dir));
  selectGroup(groups[i].id, false);
  seek(groups[i].first);
}

function init() {
  const name = localStorage.getItem("redact.reviewer") || DEFAULT_REVIEWER;
  $("reviewer").value = name;
  $("reviewer").addEventListener("input", () => {
    localStorage.setItem("redact.reviewer", $("reviewer").value.trim());
    if ($("reviewer").value.trim() && $("message").classList.contains("error")) say("");
  });
  $("video").onchange = () => openVideo($("video").value);
  $("prev").onclick = () => { pause(); seek(S.frame - 1); };
  $("next").onclick = () => { pause(); seek(S.frame + 1); };
  $("play").onclick = () => (S.playing ? pause() : play());
  $("frame-no").onchange = () => { pause(); seek(Number($("frame-no").value)); };
  $("view-preview").onclick = () => setView("preview");
  $("view-original").onclick = () => setView("original");
  $("draw").onclick = () => setDrawing(!S.drawing);
  $("fix").onclick = startFix;
  $("blackout").onclick = () => openAction("blackout", {});
  $("approve").onclick = () => openAction("approve", {});
  $("render").onclick = startRender;
  $("row-filter").onchange = () => { S.rowFilter = $("row-filter").value; drawGroups(); drawTimeline(); };
  $("row-sort").onchange = () => { S.rowSort = $("row-sort").value; drawGroups(); };
  $("select-shown").onchange = () => {
    for (const g of shownGroups()) $("select-shown").checked ? S.checked.add(g.id) : S.checked.delete(g.id);
    drawGroups();
  };
  const checkedRows = () => S.info.groups.filter((g) => S.checked.has(g.id));
  $("bulk-unredact").onclick = () => openAction("bulk", { groups: checkedRows(), redact: false });
  $("bulk-keep").onclick = () => openAction("bulk", { groups: checkedRows(), redact: true });
  $("accept-confident").onclick = () => openAction("bulk", { groups: confidentUndecided(), redact: true, accept: true });
  $("action-form").addEventListener("submit", submitAction);
  $("action-cancel").onclick = () => { $("action").close(); };
  $("action").addEventListener("close", () => { S.pending = null; drawOverlay(); });
  $("action-whole").onchange = syncWhole;
  for (const id of ["action-first", "action-last"]) $(id).addEventListener("input", () => { $("action-whole").checked = false; });
  $("release").onclick = () => openAction("release", {});
  $("action-form").addEventListener("input", () => { $("action-error").hidden = true; }); // it spoke of what was there
  $("message").onclick = () => say("");
  initLaneDrag();
  $("timeline").addEventListener("click", (ev) => {
    if (S.laneDrag?.moved) { S.laneDrag = null; return; } // the end of a drag along a lane, not a click
    pause();
    seek(frameOnTimeline(ev.clientX));
    const lane = ev.target.closest(".lane");
    if (lane?.dataset.group) selectGroup(Number(lane.dataset.group), false);
  });
  $("timeline").addEventListener("wheel", timelineWheel, { passive: false });
  $("lane-mode").onchange = () => { S.lanes = $("lane-mode").value; drawTimeline(); };
  initDrawing();
  initZoom();
  $("large").onclick = () => setLarge(!document.body.classList.contains("large"));
  setLarge(Boolean(localStorage.getItem("redact.large")));
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape" && S.drawing) { S.drag = null; setDrawing(false); drawOverlay(); return; }
    if ((ev.ctrlKey || ev.metaKey) && !ev.shiftKey && !ev.altKey && ev.key.toLowerCase() === "z" && !typing(ev) && S.info) {
      ev.preventDefault();
      undo();
      return;
    }
    if (typing(ev) || !S.info || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const step = ev.shiftKey ? 10 : 1;
    if (ev.key === " ") { ev.preventDefault(); S.playing ? pause() : play(); }
    else if (ev.key === "ArrowLeft") { ev.preventDefault(); pause(); seek(S.frame - step); }
    else if (ev.key === "ArrowRight") { ev.preventDefault(); pause(); seek(S.frame + step); }
    else if (ev.key === "n") stepGroup(1);
    else if (ev.key === "p") stepGroup(-1);
    else if (ev.key === "o") setView(S.view === "preview" ? "original" : "preview");
    else if (ev.key === "f") setLarge(!document.body.classList.contains("large"));
    else if (ev.key === "+" || ev.key === "=") setZoom(S.zoom.z * 1.5);
    else if (ev.key === "-") setZoom(S.zoom.z / 1.5);
    else if (ev.key === "0") setZoom(1);
    else if (ev.key === "z") zoomToSelected();
    else if (ev.key === "b") startFix();
  });
  loadVideos().then(watch).catch((e) => say(`Could not load: ${e.message}`, true));
}

init();
