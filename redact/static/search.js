// Search page: asks /api/search, shows hits best first, plays a hit's redacted video from a second before it.
"use strict";

const $ = (id) => document.getElementById(id);
const FILTERS = ["file", "tag", "speaker", "track", "since", "until"];
let state = { params: null, page: 0, pageSize: 20 };

function clock(seconds) {
  const ms = Math.round(seconds * 1000);
  const h = Math.floor(ms / 3600000), m = Math.floor(ms / 60000) % 60, s = (ms / 1000) % 60;
  return (h ? h + ":" + String(m).padStart(2, "0") : String(m)) + ":" + s.toFixed(1).padStart(4, "0");
}

function message(text, error = false) {
  const box = $("message");
  box.hidden = !text;
  box.textContent = text || "";
  box.classList.toggle("error", error);
}

async function getJSON(path) {
  const r = await fetch(path, { credentials: "same-origin" });
  if (!r.ok) throw new Error((await r.text()) || r.statusText);
  return r.json();
}

function formParams() {
  const p = new URLSearchParams();
  p.set("q", $("q").value.trim());
  for (const name of FILTERS) {
    const v = $(name).value.trim();
    if (v) p.set(name, v);
  }
  if ($("meaning").checked) p.set("meaning", "1");
  return p;
}

// The snippet marks matched words with [ ]; they become <mark> elements (text only: nothing is parsed as HTML).
function snippetNode(snippet) {
  const span = document.createElement("span");
  span.className = "snippet";
  const parts = snippet.split(/(\[[^\]]*\])/);
  for (const part of parts) {
    if (part.startsWith("[") && part.endsWith("]") && part.length > 2) {
      const mark = document.createElement("mark");
      mark.textContent = part.slice(1, -1);
      span.append(mark);
    } else if (part) {
      span.append(document.createTextNode(part));
    }
  }
  return span;
}

function hitNode(hit) {
  const li = document.createElement("li");
  li.className = "hit" + (hit.media ? "" : " unplayable");
  li.dataset.start = hit.start;
  li.dataset.media = hit.media || "";
  const where = document.createElement("div");
  where.className = "where";
  const file = document.createElement("span");
  file.className = "file";
  file.textContent = hit.name;
  file.title = hit.file;
  const time = document.createElement("span");
  time.className = "time";
  time.textContent = clock(hit.start);
  where.append(file, time);
  if (hit.speaker) {
    const sp = document.createElement("span");
    sp.className = "speaker";
    sp.textContent = hit.speaker;
    where.append(sp);
  }
  const label = (text) => Object.assign(document.createElement("span"), { textContent: text });
  if (hit.track) where.append(label("track " + hit.track));
  if (hit.recorded) where.append(label("recorded " + hit.recorded.slice(0, 10)));
  if (hit.by === "meaning") {
    const m = document.createElement("span");
    m.className = "meaning";
    m.textContent = "by meaning";
    where.append(m);
  }
  if (!hit.media) where.append(label("(no redacted video to play)"));
  const text = document.createElement("div");
  text.append(snippetNode(hit.snippet));
  li.append(where, text);
  li.title = hit.text;
  if (hit.media) li.addEventListener("click", () => play(hit.media, hit.start, li));
  return li;
}

async function search(page = 0) {
  const params = formParams();
  if (!params.get("q")) { message("Type something to search for."); return; }
  state.params = params;
  state.page = page;
  const query = new URLSearchParams(params);
  query.set("page", page);
  $("export").href = "/api/export.csv?" + params.toString();
  $("summary").textContent = "Searching…";
  const t0 = performance.now();
  let answer;
  try {
    answer = await getJSON("/api/search?" + query.toString());
  } catch (e) {
    $("summary").textContent = "";
    $("hits").replaceChildren();
    message(e.message, true);
    document.body.dataset.searched = String(Date.now());
    return;
  }
  message("");
  const ms = Math.round(performance.now() - t0);
  $("hits").replaceChildren(...answer.hits.map(hitNode));
  const n = answer.hits.length;
  $("summary").textContent = n
    ? `Hits ${page * state.pageSize + 1}–${page * state.pageSize + n}${answer.more ? " (more on the next page)" : ""}, best first. ${ms} ms.`
      + (answer.truncated ? " Very many segments match: only the most recent were ranked; add words or filters." : "")
    : "No matches.";
  $("summary").dataset.ms = ms;
  $("page-label").textContent = n || page ? `page ${page + 1}` : "";
  $("prev").disabled = page === 0;
  $("next").disabled = !answer.more;
  document.body.dataset.searched = String(Date.now());
}

async function play(media, at, item) {
  let moment;
  try {
    moment = await getJSON("/api/play?" + new URLSearchParams({ media, t: at }).toString());
  } catch (e) {
    message(e.message, true);
    return;
  }
  for (const el of document.querySelectorAll(".hit.playing")) el.classList.remove("playing");
  if (item) item.classList.add("playing");
  const video = $("video");
  const start = () => {
    video.currentTime = moment.start;
    video.play().catch(() => {});
  };
  if (video.dataset.media === media && video.readyState >= 1) {
    start();
  } else {
    video.dataset.media = media;
    video.addEventListener("loadedmetadata", start, { once: true });
    video.src = moment.url;
  }
  $("now").textContent = `${moment.name} at ${clock(moment.at)} (playing from ${clock(moment.start)})`;
}

async function init() {
  try {
    const info = await getJSON("/api/info");
    state.pageSize = info.page_size;
    $("user").textContent = info.user;
    $("speakers").replaceChildren(...info.speakers.map((s) => Object.assign(document.createElement("option"), { value: s })));
    if (!info.meaning) {
      $("meaning").disabled = true;
      $("meaning-label").title = "the index has no meaning vectors";
    }
  } catch (e) {
    message(e.message, true);
  }
  $("form").addEventListener("submit", (e) => { e.preventDefault(); search(0); });
  $("prev").addEventListener("click", () => search(Math.max(0, state.page - 1)));
  $("next").addEventListener("click", () => search(state.page + 1));
  const link = new URLSearchParams(location.search);
  if (link.get("play") && link.get("t")) play(link.get("play"), Number(link.get("t")), null);
  document.body.dataset.ready = "1";
}

init();
