// The operator's page: state from /stream (server-sent events), rendered at most once a frame.
// Bounded DOM: at most MAX_CARDS cards (the most recently seen first, after the filter);
// nodes are reused per identity. window.viewDebug exposes figures for tests and benchmarks.
// Publish -> page delay is measured only on identity changes that arrive after the page has its
// state (a page opened after a run must not count the backlog), and only live, never in a replay.
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
const known = new Map();         // global_id -> publish_ts the page already has
const fresh = new Map();         // global_id -> publish_ts arrived since connecting, not yet shown
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
  if (payload.full) { cards.clear(); known.clear(); fresh.clear(); }
  for (const gid of payload.removed || []) { cards.delete(gid); cardNodes.delete(gid); known.delete(gid); fresh.delete(gid); }
  const live = payload.status && payload.status.mode === "live";
  for (const c of payload.identities) {
    cards.set(c.global_id, c);
    // the full state is the backlog: known, not measured; a later change is measured when shown
    if (c.publish_ts && known.get(c.global_id) !== c.publish_ts) {
      if (!payload.full && live) fresh.set(c.global_id, c.publish_ts);
      known.set(c.global_id, c.publish_ts);
    }
  }
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
  // "live" only while live events flow; a replay says so in the connection badge
  const flowing = streamDownSince === null && status.connection.state === "connected" && !status.silent_since;
  $("mode").hidden = !(status.mode === "live" && flowing);
  $("mode").textContent = "live";
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
  const p95text = status.mode !== "live" ? "– (replay)" : p95 === null ? "– (no new events yet)" : `${(p95 * 1000).toFixed(0)} ms`;
  const items = [
    ["frames dropped", sum(s.dropped)], ["events dropped (publisher)", s.events_dropped ?? "–"],
    ["sequence gaps", k.seq_gaps], ["malformed dropped", k.malformed], ["other schema dropped", k.foreign],
    ["messages received", k.received], ["publisher restarts", k.publisher_restarts],
    ["gallery (runtime)", s.gallery ?? "–"], ["identities held", status.identities_held], ["crops held", status.crops_held],
    ["publish → page p95", p95text],
  ];
  $("counters").replaceChildren(...items.flatMap(([a, b]) => [el("dt", { text: a }), el("dd", { text: String(b) })]));
}

function renderCameras(list) {
  const select = $("filter-camera");
  for (const cam of list) {
    let t = tiles.get(cam.id);
    if (!t) {
      const img = el("img", { alt: `camera ${cam.id}` });
      const svg = svgEl("svg", {});
      const caption = el("div", { class: "caption" });
      const tile = el("div", { class: "tile", "data-camera": cam.id }, el("div", { class: "view" }, img, svg), caption);
      $("cameras").append(tile);
      t = { id: cam.id, el: tile, img, svg, caption, seq: 0 };
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
    // a camera processed below its rate says so, and what the governor does about it (docs/edge.md)
    const every = cam.detect_every > 1 ? ` · detector every ${cam.detect_every} frames` : "";
    const behind = cam.behind ? el("span", { class: "behind-badge", text: `behind: ${cam.behind.fps.toFixed(1)} of the ${cam.behind.rate.toFixed(1)} fps it delivers${every}` })
      : every ? el("span", { class: "muted", text: every.slice(3) }) : null;
    t.caption.replaceChildren(el("span", { text: cam.id }),
      down ? el("span", { class: "down-badge", text: `down since ${hms(cam.down_since)}` }) : el("span", { class: "muted", text: fps + prev }),
      ...(down || !behind ? [] : [behind]));
  }
}

// One colour per identity (golden-angle hues), the same on every tile.
const idColour = (gid) => `hsl(${Math.round((gid * 137.508) % 360)}, 75%, 62%)`;

function drawBoxes(t) {
  const f = t.pending;
  if (!f) return;
  t.svg.setAttribute("viewBox", `0 0 ${f.width} ${f.height}`);
  // labels ~12 screen pixels tall whatever the tile's size (the viewBox is in preview pixels)
  const r = t.svg.getBoundingClientRect();
  const scale = Math.min(r.width / f.width, r.height / f.height) || 1;
  const fontSize = 12 / scale;
  const boxes = [], labels = [];
  for (const [x0, y0, x1, y1, lid, gid] of f.boxes || []) {
    const confirmed = gid !== null && gid !== undefined;
    const rect = svgEl("rect", { class: `box ${confirmed ? "confirmed" : "pending"}`, x: x0, y: y0, width: x1 - x0, height: y1 - y0,
      "data-local": lid, "data-gid": confirmed ? gid : "" });
    const tip = svgEl("title");
    tip.textContent = confirmed ? `${t.id} track ${lid}: identity #${gid}` : `${t.id} track ${lid}: identity not decided yet`;
    rect.append(tip);
    if (confirmed) { rect.style.stroke = idColour(gid); labels.push({ box: [x0, y0, x1, y1], text: `#${gid}`, gid }); }
    boxes.push(rect);
  }
  t.svg.replaceChildren(...boxes);
  for (const item of placeLabels(labels, f.width, f.height, fontSize)) t.svg.append(...item);
}

function overlapArea(a, b) {
  const w = Math.min(a[2], b[2]) - Math.max(a[0], b[0]), h = Math.min(a[3], b[3]) - Math.max(a[1], b[1]);
  return w > 0 && h > 0 ? w * h : 0;
}

// Labels of bunched people must not cover each other: each takes the first free spot of a few
// candidates around its box (above, inside the top, below, further up, beside), top boxes first;
// a label moved away from its box gets a thin leader line to it.
// The first of `spots` (top-left corners) where a w x h rectangle, kept inside `bounds`
// [xmin, ymin, xmax, ymax], covers nothing in `taken`, else the one covering least; it is taken.
function takeSpot(spots, w, h, bounds, taken) {
  let best = null;
  for (const [sx, sy] of spots) {
    const x = Math.max(bounds[0], Math.min(bounds[2] - w, sx)), y = Math.max(bounds[1], Math.min(bounds[3] - h, sy));
    const r = [x, y, x + w, y + h];
    const cost = taken.reduce((acc, o) => acc + overlapArea(r, o), 0);
    if (best === null || cost < best.cost) best = { r, cost };
    if (cost === 0) break;
  }
  taken.push(best.r);
  return best.r;
}

function placeLabels(labels, width, height, fontSize) {
  const h = fontSize * 1.25, pad = fontSize * 0.25, taken = [], out = [];
  labels.sort((a, b) => a.box[1] - b.box[1] || a.box[0] - b.box[0]);
  for (const L of labels) {
    const [x0, y0, x1, y1] = L.box;
    const w = L.text.length * fontSize * 0.62 + 2 * pad;
    const spots = [[x0, y0 - h - 1], [x0, y0 + 1], [x0, y1 + 1], [x0, y0 - 2 * h - 2], [x0, y0 - 3 * h - 3],
                   [x1 + 1, y0], [x0 - w - 1, y0], [x1 + 1, y0 + h + 1], [x0 - w - 1, y0 + h + 1], [x0, y1 + h + 2]];
    const [lx, ly] = takeSpot(spots, w, h, [0, 0, width, height], taken);
    const g = svgEl("g", { class: "label", "data-gid": L.gid });
    g.append(svgEl("rect", { x: lx, y: ly, width: w, height: h, rx: pad }));
    const text = svgEl("text", { x: lx + pad, y: ly + h - pad * 1.3, "font-size": fontSize });
    text.textContent = L.text;
    text.style.fill = idColour(L.gid);
    g.append(text);
    const parts = [g];
    const near = ly + h >= y0 - 2 && ly <= y1 && lx <= x1 + 2 && lx + w >= x0 - 2;
    if (!near) parts.unshift(svgEl("line", { class: "leader", x1: lx + w / 2, y1: ly + (ly < y0 ? h : 0), x2: (x0 + x1) / 2, y2: ly < y0 ? y0 : y1 }));
    out.push(parts);
  }
  return out;
}

function visibleCards() {
  const idText = $("filter-id").value.trim();
  const cam = $("filter-camera").value;
  const liveOnly = $("filter-live").checked;
  const showShort = $("filter-short").checked;
  const t = now();
  let list = [...cards.values()];
  const short = list.filter((c) => c.sealed).length;
  if (!showShort) list = list.filter((c) => !c.sealed);
  if (idText) list = list.filter((c) => String(c.global_id).startsWith(idText));
  if (cam) list = list.filter((c) => c.cameras.includes(cam));
  if (liveOnly) list = list.filter((c) => c.active_until > t);
  list.sort((a, b) => (b.last_seen ?? 0) - (a.last_seen ?? 0) || b.global_id - a.global_id);
  return [list.length, list.slice(0, MAX_CARDS), short];
}

function renderCards() {
  const [total, list, short] = visibleCards();
  const t = now();
  const wall = Date.now() / 1000;
  const nodes = list.map((c) => {
    let node = cardNodes.get(c.global_id);
    const key = JSON.stringify([c.crop, c.cameras, c.last_seen, c.merged_into, c.expired, c.notes, c.active_until > t, c.sightings, c.sealed, c.provisional]);
    if (!node || node.dataset.key !== key) {
      node = cardNode(c, t);
      node.dataset.key = key;
      cardNodes.set(c.global_id, node);
    }
    node.classList.toggle("selected", c.global_id === selected);
    if (fresh.has(c.global_id)) {
      const L = window.viewDebug.latencies;
      L.push(wall - fresh.get(c.global_id));
      if (L.length > 5000) L.splice(0, L.length - 5000);
    }
    return node;
  });
  fresh.clear();  // a change not on screen now is not measured later (its delay would be the user's scrolling)
  $("cards").replaceChildren(...nodes);
  $("people-count").textContent = total > list.length ? `showing ${list.length} of ${total}` : `${total}`;
  $("short-count").textContent = String(short);
}

function noCrop() {
  const figure = svgEl("svg", { viewBox: "0 0 24 40", "aria-hidden": "true" });
  figure.append(svgEl("circle", { cx: 12, cy: 7, r: 5 }), svgEl("path", { d: "M4 38 V20 Q4 14 12 14 Q20 14 20 20 V38" }));
  return el("div", { class: "noimg", title: "no crop: none was sent for this person, or it was forgotten" }, figure, el("span", { text: "no crop" }));
}

function cropImage(id, alt) {
  const img = el("img", { src: `crop/${id}`, alt, loading: "lazy" });
  img.onerror = () => img.replaceWith(noCrop());  // a crop the view no longer holds
  return img;
}

function cardNode(c, t) {
  const live = c.active_until > t;
  const img = c.crop ? cropImage(c.crop, `identity ${c.global_id}`) : noCrop();
  const state = c.merged_into !== null ? el("div", { class: "note merged-into", text: `merged into #${c.merged_into}` })
    : c.expired ? el("div", { class: "muted", text: "expired" })
    : c.sealed ? el("div", { class: "muted", text: "too short to match" })
    : el("div", { class: live ? "live" : "muted", text: live ? "● live" : "not live" });
  const provisional = c.provisional ? [el("div", { class: "provisional", text: "provisional id",
    title: "given by an edge node while its site hub was away: the hub gives this person a site id when it answers" })] : [];
  const notes = c.notes.filter((n) => !n.startsWith("merged into")).slice(-2).map((n) => el("div", { class: "note", text: n }));
  const info = el("div", {},
    el("div", { class: "gid", text: `#${c.global_id}` }),
    el("div", { class: "cams", text: c.cameras.join(", ") || "–" }),
    el("div", { class: "muted", text: `${hms(c.first_seen)} – ${hms(c.last_seen)}` }),
    state, ...provisional, ...notes);
  const node = el("div", { class: "card" + (c.merged_into !== null ? " merged" : "") + (c.expired ? " expired" : "") + (c.sealed ? " sealed" : "") + (c.provisional ? " provisional" : ""),
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
    s.crop ? cropImage(s.crop, "") : null,
    el("span", { text: `${s.camera} (track ${s.local_id}) ${hms(s.first_ts)} – ${hms(s.last_ts)}${s.ended ? "" : " · open"}` }))));
  drawFloor(j.sightings);
}

// The floor track: one polyline per sighting, numbered as in the list above, one colour per
// camera (the key on top); everything, labels included, stays inside the 300 x 200 box.
const FLOOR = { w: 300, h: 200, left: 10, right: 290, top: 30, bottom: 190 };
function drawFloor(sightings) {
  const svg = $("floor");
  const pts = sightings.flatMap((s) => s.floor);
  svg.toggleAttribute("hidden", pts.length === 0);  // an SVG element has no .hidden property
  if (!pts.length) return;
  const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
  const [x0, x1, y0, y1] = [Math.min(...xs) - 1, Math.max(...xs) + 1, Math.min(...ys) - 1, Math.max(...ys) + 1];
  const s = Math.min((FLOOR.right - FLOOR.left) / (x1 - x0), (FLOOR.bottom - FLOOR.top) / (y1 - y0));
  const X = (x) => FLOOR.left + (x - x0) * s, Y = (y) => FLOOR.bottom - (y - y0) * s;
  const colors = ["#58a6ff", "#3fb950", "#d29922", "#f778ba", "#a371f7", "#79c0ff"];
  const cams = [...new Set(sightings.map((q) => q.camera))];
  const nodes = [], labels = [];
  sightings.forEach((q, i) => {
    if (!q.floor.length) return;
    const color = colors[cams.indexOf(q.camera) % colors.length];
    nodes.push(svgEl("polyline", { points: q.floor.map((p) => `${X(p[0])},${Y(p[1])}`).join(" "), fill: "none", stroke: color, "stroke-width": 2 }));
    const [cx, cy] = [X(q.floor[0][0]), Y(q.floor[0][1])];
    nodes.push(svgEl("circle", { cx, cy, r: 3, fill: color }));
    labels.push({ box: [cx - 3, cy - 3, cx + 3, cy + 3], text: String(i + 1) });
  });
  const fontSize = 9, h = fontSize * 1.2;
  const taken = [];
  for (const L of labels) {  // step numbers beside their start points, inside the plot, not on each other
    const w = L.text.length * fontSize * 0.62;
    const [bx0, by0, bx1, by1] = L.box;
    const spots = [[bx1 + 1, by0 - h], [bx0 - w - 1, by0 - h], [bx1 + 1, by1], [bx0 - w - 1, by1], [bx1 + 1, by0 - 2 * h], [bx0 - w - 1, by1 + h]];
    const [lx, ly] = takeSpot(spots, w, h, [FLOOR.left - 8, FLOOR.top - 4, FLOOR.w - 2, FLOOR.h - 1], taken);
    const label = svgEl("text", { class: "step", x: lx, y: ly + h - 2 });
    label.textContent = L.text;
    nodes.push(label);
  }
  const scale = svgEl("text", { x: 6, y: 12 });
  scale.textContent = `floor, metres: x ${x0.toFixed(0)}…${x1.toFixed(0)}, y ${y0.toFixed(0)}…${y1.toFixed(0)}`;
  nodes.push(scale);
  let kx = 6;
  cams.forEach((cam, k) => {  // the camera key, left to right under the scale
    const key = svgEl("text", { class: "key", x: kx, y: 24, fill: colors[k % colors.length] });
    key.style.fill = colors[k % colors.length];
    key.textContent = cam;
    nodes.push(key);
    kx += cam.length * 9 * 0.62 + 10;
  });
  svg.replaceChildren(...nodes);
}

$("journey-close").onclick = () => { selected = null; $("journey").hidden = true; dirty.cards = true; schedule(); };
for (const id of ["filter-id", "filter-camera", "filter-live", "filter-short"]) $(id).addEventListener("input", () => { dirty.cards = true; schedule(); });
setInterval(() => { dirty.cards = true; dirty.status = true; schedule(); }, 1000);  // live flags and "since" age
connect();
