// aether serve dashboard: one tile per node, live over the WebSocket, reconciled with
// GET /api/v1/nodes every 2 s. No external resources.
"use strict";
(function () {
  const params = new URLSearchParams(location.hash.slice(1));
  if (params.get("token")) sessionStorage.setItem("aether-token", params.get("token"));
  const token = sessionStorage.getItem("aether-token");
  const headers = token ? { Authorization: "Bearer " + token } : {};
  const grid = document.getElementById("grid");
  const empty = document.getElementById("empty");
  const tiles = new Map();
  let classes = [];
  let staleMs = 5000;
  let lastFrames = null, lastAt = 0, lagged = 0;
  let recording = false;

  function api(path) {
    return fetch(path, { headers }).then((r) => {
      if (!r.ok) throw new Error(path + ": " + r.status);
      return r.json();
    });
  }

  function tile(id) {
    let t = tiles.get(id);
    if (t) return t;
    const el = document.createElement("section");
    el.className = "tile";
    el.dataset.node = id;
    el.innerHTML =
      '<div class="head"><span class="id"></span><span class="state badge"></span></div>' +
      '<div class="class"></div><div class="probs"></div>' +
      '<canvas class="strip" width="160" height="64"></canvas>' +
      '<div class="meta"><span>frames <b class="frames">0</b></span><span class="context"></span></div>' +
      '<form class="label" hidden><input class="lname" list="class-list" placeholder="label (class)" maxlength="64" required>' +
      '<button class="rec" type="submit">● Record</button><span class="rec-state"></span></form>';
    el.querySelector(".id").textContent = id;
    const form = el.querySelector("form.label");
    form.hidden = !recording;
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const active = el.dataset.label;
      const name = el.querySelector(".lname").value.trim();
      label(id, active ? null : name);
    });
    grid.appendChild(el);
    t = { el, probs: new Map(), canvas: el.querySelector("canvas"), col: 0 };
    tiles.set(id, t);
    const sorted = [...tiles.keys()].sort();
    for (const k of sorted) grid.appendChild(tiles.get(k).el);
    empty.style.display = "none";
    return t;
  }

  // Starts (class) or stops (null) a labelled segment of a node (POST /api/v1/label).
  function label(id, cls) {
    const t = tiles.get(id);
    const st = t && t.el.querySelector(".rec-state");
    fetch("/api/v1/label", {
      method: "POST",
      headers: Object.assign({ "Content-Type": "application/json" }, headers),
      body: JSON.stringify({ node: id, class: cls }),
    }).then((r) => r.json().then((j) => {
      if (!r.ok) { if (st) st.textContent = "✗ " + (j.error || r.status); return; }
      if (st) st.textContent = cls ? "" : "saved " + j.finished.file + " (" + j.finished.frames + " frames)";
      showLabel(id, cls ? { class: cls, frames: 0 } : null);
    })).catch((e) => { if (st) st.textContent = "✗ " + e; });
  }

  function showLabel(id, l) {
    const t = tiles.get(id);
    if (!t) return;
    const btn = t.el.querySelector(".rec"), input = t.el.querySelector(".lname");
    if (l) {
      t.el.dataset.label = l.class;
      t.el.classList.add("recording");
      btn.textContent = "■ Stop " + l.class + (l.frames ? " · " + l.frames : "");
      input.value = l.class;
      input.disabled = true;
    } else {
      delete t.el.dataset.label;
      t.el.classList.remove("recording");
      btn.textContent = "● Record";
      input.disabled = false;
    }
  }

  function probRow(t, name) {
    let r = t.probs.get(name);
    if (r) return r;
    const el = document.createElement("div");
    el.className = "prob";
    el.dataset.class = name;
    el.innerHTML = '<span class="name"></span><span class="track"><span class="fill"></span></span><span class="value">0.000</span>';
    el.querySelector(".name").textContent = name;
    t.el.querySelector(".probs").appendChild(el);
    r = { el, fill: el.querySelector(".fill"), value: el.querySelector(".value") };
    t.probs.set(name, r);
    return r;
  }

  function heat(v) {
    // 0..255 (amplitude / frame mean × 100) -> dark blue .. yellow
    const x = Math.min(1, v / 200);
    const r = Math.round(255 * Math.min(1, Math.max(0, 1.6 * x - 0.4)));
    const g = Math.round(255 * Math.min(1, Math.max(0, 1.4 * x - 0.1)));
    const b = Math.round(255 * Math.max(0, 0.7 - 0.9 * Math.abs(x - 0.35)));
    return "rgb(" + r + "," + g + "," + b + ")";
  }

  function strip(t, amps) {
    const c = t.canvas, ctx = c.getContext("2d");
    if (c.height !== amps.length) { c.height = amps.length; t.col = 0; }
    if (t.col >= c.width) {
      const img = ctx.getImageData(1, 0, c.width - 1, c.height);
      ctx.putImageData(img, 0, 0);
      t.col = c.width - 1;
    }
    for (let k = 0; k < amps.length; k++) {
      ctx.fillStyle = heat(amps[k]);
      ctx.fillRect(t.col, amps.length - 1 - k, 1, 1);
    }
    t.col++;
  }

  function update(n) {
    const t = tile(n.id);
    t.el.classList.toggle("stale", n.state === "stale");
    const st = t.el.querySelector(".state");
    st.textContent = n.state;
    st.className = "state badge " + (n.state === "live" ? "on" : "off");
    t.el.querySelector(".class").textContent = n.class == null ? "—" : n.class;
    t.el.querySelector(".frames").textContent = n.frames;
    t.el.querySelector(".context").textContent = n.context ? "context " + n.context : "";
    const names = Object.keys(n.probs || {});
    let best = null;
    for (const c of names) if (best === null || n.probs[c] > n.probs[best]) best = c;
    for (const c of (classes.length ? classes : names)) {
      if (!(c in (n.probs || {}))) continue;
      const r = probRow(t, c), p = n.probs[c];
      r.fill.style.width = (100 * p).toFixed(1) + "%";
      r.value.textContent = p.toFixed(3);
      r.el.classList.toggle("top", c === best);
    }
    if (Array.isArray(n.amps) && n.amps.length) strip(t, n.amps);
    if ("label" in n) showLabel(n.id, n.label);
  }

  function setRecording(on) {
    recording = on;
    for (const t of tiles.values()) t.el.querySelector("form.label").hidden = !on;
  }

  function classList(names) {
    let dl = document.getElementById("class-list");
    if (!dl) { dl = document.createElement("datalist"); dl.id = "class-list"; document.body.appendChild(dl); }
    dl.innerHTML = "";
    for (const c of names) { const o = document.createElement("option"); o.value = c; dl.appendChild(o); }
  }

  function summary(list) {
    let live = 0, stale = 0, frames = 0;
    for (const n of list) { if (n.state === "live") live++; else stale++; frames += n.frames; }
    document.getElementById("live-count").textContent = live;
    document.getElementById("stale-count").textContent = stale;
    const now = performance.now();
    if (lastFrames !== null && now > lastAt) {
      document.getElementById("fps").textContent = Math.max(0, Math.round((frames - lastFrames) * 1000 / (now - lastAt)));
    }
    lastFrames = frames; lastAt = now;
  }

  function poll() {
    api("/api/v1/nodes").then((r) => {
      const seen = new Set();
      for (const n of r.nodes) { seen.add(n.id); update(n); }
      for (const [id, t] of tiles) if (!seen.has(id)) { t.el.remove(); tiles.delete(id); }
      if (!tiles.size) empty.style.display = "";
      summary(r.nodes);
    }).catch(() => {});
  }

  function connect() {
    const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host +
      "/api/v1/stream" + (token ? "?token=" + encodeURIComponent(token) : ""));
    const badge = document.getElementById("ws-state");
    ws.onopen = () => { badge.textContent = "live"; badge.className = "badge on"; };
    ws.onclose = () => { badge.textContent = "disconnected"; badge.className = "badge off"; setTimeout(connect, 2000); };
    ws.onmessage = (e) => {
      const m = JSON.parse(e.data);
      if (m.type === "hello") { classes = m.classes; staleMs = m.stale_ms; classList(classes); setRecording(!!m.recording); }
      else if (m.type === "node") update(m);
      else if (m.type === "expired") { const t = tiles.get(m.id); if (t) { t.el.remove(); tiles.delete(m.id); } }
      else if (m.type === "lagged") { lagged += m.missed; document.getElementById("lagged").textContent = lagged + " updates skipped (slow link)"; }
      else if (m.type === "shutdown") { badge.textContent = "server stopped"; }
    };
  }

  api("/api/v1/record").then((r) => setRecording(!!r.enabled)).catch(() => {});
  api("/api/v1/model").then((m) => {
    classes = m.classes;
    classList(classes);
    document.getElementById("model").textContent =
      "model " + m.hash.slice(0, 12) + " · " + m.classes.join(", ") + " · horizon " + m.stream.horizon + " · UDP " + m.udp;
  }).catch(() => {});
  connect();
  poll();
  setInterval(poll, 2000);
})();
