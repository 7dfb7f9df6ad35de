// The operator's page: state from /stream (server-sent events), rendered at most once a frame.
// Bounded DOM: at most MAX_CARDS cards (the most recently seen first, after the filter);
// nodes are reused per identity. window.viewDebug exposes figures for tests and benchmarks.
"use strict";

const MAX_CARDS = 120;
const cards = new Map();        // global_id -> card (from the server)
const cardNodes = new Map();    // global_id -> element
const tiles = new Map();        // camera id -> {el, img, svg, caption, seq}
let status = null;
let selected = null;
let dirty = { cards: true, cameras: [], status: true };
let scheduled = false;
let streamDownSince = null;
let lastJourneyFetch = 0;
const measured = new Map();      // global_id -> publish_ts already measured
window.viewDebug = { latencies: [], renders: 0, version: -1, messages: 0 };

const $ = (id) => document.getElementById(id);
const pad = (n) => String(n).padStart(2, "0");
function hms(ts) {
  if (ts === null || ts === undefined) return "–";
  const d = new Date(ts * 1000);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  for (const c of children) if (c) e.append(c);
  return e;
}
const SVG = "http://www.w3.org/2000/svg";
function svgEl(tag, attrs = {}) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

// --- input ---------------------------------------------------------------------------------
function apply(payload) {
  window.viewDebug.messages++;
  if (payload.full) { cards.clear(); }
  for (const gid of payload.removed || []) { cards.delete(gid); cardNodes.delete(gid); measured.delete(gid); }
  for (const c of payload.identities) cards.set(c.global_id, c);
  if (payload.full) {
    for (const gid of [...cardNodes.keys()]) if (!cards.has(gid)) cardNodes.delete(gid);
  }
  dirty.cards = dirty.cards || payload.identities.length > 0 || payload.full || (payload.removed || []).length > 0;
  dirty.cameras = payload.cameras;
  status = payload.status;
  dirty.status = true;
  window.viewDebug.version = payload.version;
  if (selected !== null && payload.identities.some((c) => c.global_id === selected)) refreshJourney(false);
  schedule();
}

function schedule() {
  if (!scheduled) { scheduled = true; requestAnimationFrame(render); }
}

function connect() {
  const source = new EventSource("stream");
  source.onmessage = (e) => { streamDownSince = null; apply(JSON.parse(e.data)); };
  source.onerror = () => {  // EventSource reconnects by itself; say so meanwhile
    if (streamDownSince === null) streamDownSince = Date.now() / 1000;
    dirty.status = true; schedule();
  };
}

// --- render --------------------------------------------------------------------------------
function render() {
  scheduled = false;
  window.viewDebug.renders++;
  if (dirty.status) renderStatus();
  if (dirty.cameras.length) renderCameras(dirty.cameras);
  if (dirty.cards) renderCards();
  dirty = { cards: false, cameras: [], status: false };
}

function now() { return status ? status.clock : Date.now() / 1000; }

function renderStatus() {
  const badge = $("connection");
  let text = "connecting…", cls = "badge";
  if (streamDownSince !== null) { text = `view server unreachable since ${hms(streamDownSince)}`; cls = "badge bad"; }
  else if (status) {
    const c = status.connection;
    if (c.state === "connected") { text = `connected to ${c.endpoint}`; cls = "badge ok"; }
    else if (c.state === "disconnected") { text = `disconnected since ${hms(c.since)}`; cls = "badge bad"; }
    else if (c.state === "refused") { text = `refused by ${c.endpoint} (CURVE) since ${hms(c.since)}`; cls = "badge bad"; }
    else if (c.state.startsWith("replay")) { text = `${c.state}: ${c.endpoint}`; cls = "badge ok"; }
    else text = `connecting to ${c.endpoint}…`;
    if (status.silent_since) { text += ` · no events since ${hms(status.silent_since)}`; cls = "badge bad"; }
  }
  badge.textContent = text; badge.className = cls;
  if (!status) return;
  $("clock").textContent = hms(status.clock);
  $("mode").textContent = status.mode;
  const banner = $("banner");
  banner.hidden = !status.schema_problem;
  banner.textContent = status.schema_problem || "";
  renderStats();
}

function renderStats() {
  const s = status.stats || {};
  const body = $("latency").querySelector("tbody");
  const rows = [];
  const lat = s.latency_ms || {};
  for (const stage of ["decode", "detect", "track", "embed", "match", "publish"]) {
    if (lat[stage]) rows.push([stage, lat[stage].p50, lat[stage].p99]);
  }
  if (s.end_to_end_ms && s.end_to_end_ms.p50 !== undefined) rows.push(["end to end", s.end_to_end_ms.p50, s.end_to_end_ms.p99]);
  body.replaceChildren(...rows.map(([n, a, b]) => el("tr", {}, el("td", { text: n }), el("td", { text: a.toFixed(1) }), el("td", { text: b.toFixed(1) }))));
  const sum = (o) => Object.values(o || {}).reduce((a, b) => a + b, 0);
  const k = status.counters;
  const lats = window.viewDebug.latencies.slice(-200).sort((a, b) => a - b);
  const p95 = lats.length ? lats[Math.floor(0.95 * (lats.length - 1))] : null;
  const items = [
    ["frames dropped", sum(s.dropped)], ["events dropped (publisher)", s.events_dropped ?? "–"],
    ["sequence gaps", k.seq_gaps], ["malformed dropped", k.malformed], ["other schema dropped", k.foreign],
    ["messages received", k.received], ["publisher restarts", k.publisher_restarts],
    ["gallery (runtime)", s.gallery ?? "–"], ["identities held", status.identities_held], ["crops held", status.crops_held],
    ["publish → page p95", p95 === null ? "–" : `${(p95 * 1000).toFixed(0)} ms`],
  ];
  $("counters").replaceChildren(...items.flatMap(([a, b]) => [el("dt", { text: a }), el("dd", { text: String(b) })]));
}

function renderCameras(list) {
  const select = $("filter-camera");
  for (const cam of list) {
    let t = tiles.get(cam.id);
    if (!t) {
      const img = el("img", { alt: `camera ${cam.id}` });
      const svg = svgEl("svg", { preserveAspectRatio: "none" });
      const caption = el("div", { class: "caption" });
      const tile = el("div", { class: "tile", "data-camera": cam.id }, el("div", { class: "view" }, img, svg), caption);
      $("cameras").append(tile);
      t = { el: tile, img, svg, caption, seq: 0 };
      img.onload = () => drawBoxes(t);
      tiles.set(cam.id, t);
      select.append(el("option", { value: cam.id, text: cam.id }));
      const ids = [...tiles.keys()].sort();  // tiles and filter options in camera-name order
      $("cameras").append(...ids.map((id) => tiles.get(id).el));
      select.append(...[...select.options].slice(1).sort((a, b) => a.value.localeCompare(b.value)));
    }
    if (cam.frame_seq !== t.seq && cam.frame_seq > 0) {
      t.seq = cam.frame_seq; t.pending = cam.frame;
      t.img.src = `frame/${encodeURIComponent(cam.id)}?seq=${cam.frame_seq}`;
      t.el.dataset.seq = cam.frame_seq;
    }
    const down = cam.down_since !== null && cam.down_since !== undefined;
    t.el.classList.toggle("down", down);
    const fps = cam.fps !== null && cam.fps !== undefined ? `${cam.fps.toFixed(1)} fps` : "";
    const prev = cam.preview_fps ? ` · preview ${cam.preview_fps.toFixed(1)} fps` : "";
    t.caption.replaceChildren(el("span", { text: cam.id }),
      down ? el("span", { class: "down-badge", text: `down since ${hms(cam.down_since)}` }) : el("span", { class: "muted", text: fps + prev }));
  }
}

function drawBoxes(t) {
  const f = t.pending;
  if (!f) return;
  t.svg.setAttribute("viewBox", `0 0 ${f.width} ${f.height}`);
  const nodes = [];
  for (const [x0, y0, x1, y1, lid, gid] of f.boxes || []) {
    nodes.push(svgEl("rect", { x: x0, y: y0, width: x1 - x0, height: y1 - y0 }));
    const label = svgEl("text", { x: x0, y: Math.max(10, y0 - 2) });
    label.textContent = `${lid}→${gid === null ? "?" : "#" + gid}`;
    nodes.push(label);
  }
  t.svg.replaceChildren(...nodes);
}

function visibleCards() {
  const idText = $("filter-id").value.trim();
  const cam = $("filter-camera").value;
  const liveOnly = $("filter-live").checked;
  const t = now();
  let list = [...cards.values()];
  if (idText) list = list.filter((c) => String(c.global_id).startsWith(idText));
  if (cam) list = list.filter((c) => c.cameras.includes(cam));
  if (liveOnly) list = list.filter((c) => c.active_until > t);
  list.sort((a, b) => (b.last_seen ?? 0) - (a.last_seen ?? 0) || b.global_id - a.global_id);
  return [list.length, list.slice(0, MAX_CARDS)];
}

function renderCards() {
  const [total, list] = visibleCards();
  const t = now();
  const wall = Date.now() / 1000;
  const nodes = list.map((c) => {
    let node = cardNodes.get(c.global_id);
    const key = JSON.stringify([c.crop, c.cameras, c.last_seen, c.merged_into, c.expired, c.notes, c.active_until > t, c.sightings]);
    if (!node || node.dataset.key !== key) {
      node = cardNode(c, t);
      node.dataset.key = key;
      cardNodes.set(c.global_id, node);
    }
    node.classList.toggle("selected", c.global_id === selected);
    if (c.publish_ts && measured.get(c.global_id) !== c.publish_ts) {
      measured.set(c.global_id, c.publish_ts);
      const L = window.viewDebug.latencies;
      L.push(wall - c.publish_ts);
      if (L.length > 5000) L.splice(0, L.length - 5000);
    }
    return node;
  });
  if (measured.size > 4 * MAX_CARDS + cards.size) measured.clear();
  $("cards").replaceChildren(...nodes);
  $("people-count").textContent = total > list.length ? `showing ${list.length} of ${total}` : `${total}`;
}

function cardNode(c, t) {
  const live = c.active_until > t;
  const img = c.crop ? el("img", { src: `crop/${c.crop}`, alt: `identity ${c.global_id}`, loading: "lazy" }) : el("div", { class: "noimg" });
  const state = c.merged_into !== null ? el("div", { class: "note merged-into", text: `merged into #${c.merged_into}` })
    : c.expired ? el("div", { class: "muted", text: "expired" })
    : c.sealed ? el("div", { class: "muted", text: "too short to match" })
    : el("div", { class: live ? "live" : "muted", text: live ? "● live" : "not live" });
  const notes = c.notes.filter((n) => !n.startsWith("merged into")).slice(-2).map((n) => el("div", { class: "note", text: n }));
  const info = el("div", {},
    el("div", { class: "gid", text: `#${c.global_id}` }),
    el("div", { class: "cams", text: c.cameras.join(", ") || "–" }),
    el("div", { class: "muted", text: `${hms(c.first_seen)} – ${hms(c.last_seen)}` }),
    state, ...notes);
  const node = el("div", { class: "card" + (c.merged_into !== null ? " merged" : "") + (c.expired ? " expired" : "") + (c.sealed ? " sealed" : ""),
    "data-gid": c.global_id, "data-live": live ? "1" : "0" }, img, info);
  node.onclick = () => { selected = c.global_id; refreshJourney(true); dirty.cards = true; schedule(); };
  return node;
}

// --- journey -------------------------------------------------------------------------------
async function refreshJourney(force) {
  if (selected === null) return;
  const wall = Date.now();
  if (!force && wall - lastJourneyFetch < 1000) return;
  lastJourneyFetch = wall;
  const gid = selected;
  const r = await fetch(`api/identity/${gid}`);
  if (selected !== gid) return;
  const pane = $("journey");
  pane.hidden = false;
  if (!r.ok) { $("journey-title").textContent = `#${gid}`; $("journey-meta").textContent = (await r.json()).error; return; }
  const j = await r.json();
  const c = j.card;
  $("journey-title").textContent = `#${c.global_id}`;
  const meta = [`seen in ${c.cameras.join(", ") || "–"}`, `${hms(c.first_seen)} – ${hms(c.last_seen)}`];
  if (c.merged_into !== null) meta.push(`merged into #${c.merged_into}`);
  if (c.merged_from.length) meta.push(`absorbed #${c.merged_from.join(", #")}`);
  $("journey-meta").textContent = meta.join(" · ");
  $("journey-steps").replaceChildren(...j.sightings.map((s) => el("li", { "data-camera": s.camera },
    s.crop ? el("img", { src: `crop/${s.crop}`, alt: "" }) : null,
    el("span", { text: `${s.camera} (track ${s.local_id}) ${hms(s.first_ts)} – ${hms(s.last_ts)}${s.ended ? "" : " · open"}` }))));
  drawFloor(j.sightings);
}

function drawFloor(sightings) {
  const svg = $("floor");
  const pts = sightings.flatMap((s) => s.floor);
  svg.hidden = pts.length === 0;
  if (!pts.length) return;
  const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
  const [x0, x1, y0, y1] = [Math.min(...xs) - 1, Math.max(...xs) + 1, Math.min(...ys) - 1, Math.max(...ys) + 1];
  const s = Math.min(280 / (x1 - x0), 180 / (y1 - y0));
  const X = (x) => 10 + (x - x0) * s, Y = (y) => 190 - (y - y0) * s;
  const colors = ["#58a6ff", "#3fb950", "#d29922", "#f778ba", "#a371f7", "#79c0ff"];
  const cams = [...new Set(sightings.map((q) => q.camera))];
  const nodes = [];
  for (const q of sightings) {
    if (!q.floor.length) continue;
    const color = colors[cams.indexOf(q.camera) % colors.length];
    nodes.push(svgEl("polyline", { points: q.floor.map((p) => `${X(p[0])},${Y(p[1])}`).join(" "), fill: "none", stroke: color, "stroke-width": 2 }));
    nodes.push(svgEl("circle", { cx: X(q.floor[0][0]), cy: Y(q.floor[0][1]), r: 3, fill: color }));
    const label = svgEl("text", { x: X(q.floor[0][0]) + 4, y: Y(q.floor[0][1]) - 4 });
    label.textContent = q.camera;
    nodes.push(label);
  }
  const scale = svgEl("text", { x: 10, y: 12 });
  scale.textContent = `floor, metres: x ${x0.toFixed(0)}…${x1.toFixed(0)}, y ${y0.toFixed(0)}…${y1.toFixed(0)}`;
  nodes.push(scale);
  svg.replaceChildren(...nodes);
}

$("journey-close").onclick = () => { selected = null; $("journey").hidden = true; dirty.cards = true; schedule(); };
for (const id of ["filter-id", "filter-camera", "filter-live"]) $(id).addEventListener("input", () => { dirty.cards = true; schedule(); });
setInterval(() => { dirty.cards = true; dirty.status = true; schedule(); }, 1000);  // live flags and "since" age
connect();
