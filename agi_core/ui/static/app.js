/* agi ui: small helpers and the live view of a job (run, install, pipeline) over server-sent events. */
"use strict";
const agi = (() => {
  const SVG = "http://www.w3.org/2000/svg";
  const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));

  function tab(button) {
    button.parentElement.querySelectorAll(".tab").forEach((b) => b.classList.toggle("active", b === button));
    const panel = document.getElementById("snippet-panel");  // a reload after Save keeps this kind
    if (panel) { panel.setAttribute("hx-get", button.getAttribute("hx-get")); htmx.process(panel); }
  }

  /* Unsaved edits: each edited field is marked, and the Run card says Run uses the saved values. */
  function markDirty(ev) {
    const field = ev.target.closest(".settings .field, .settings .worker-row");
    if (field) field.classList.add("dirty");
    showDirty();
  }
  function showDirty() {
    const banner = document.getElementById("unsaved");
    if (banner) banner.hidden = !document.querySelector(".settings .dirty");
  }

  function copy(button) {
    const code = button.closest(".snippet").querySelector("code").textContent;
    const done = () => { button.textContent = "Copied ✓"; setTimeout(() => (button.textContent = "Copy"), 1500); };
    if (navigator.clipboard && window.isSecureContext) { navigator.clipboard.writeText(code).then(done); return; }
    const area = document.createElement("textarea");
    area.value = code; document.body.appendChild(area); area.select(); document.execCommand("copy"); area.remove(); done();
  }

  function addWorker() {
    const row = document.createElement("div");
    row.className = "worker-row";
    row.innerHTML = '<input name="worker_host" placeholder="host or user@host" aria-label="host">' +
      '<input name="worker_count" type="number" min="0" value="1" aria-label="workers">' +
      '<button type="button" class="btn small ghost" onclick="agi.removeWorker(this)">✕</button>';
    row.classList.add("dirty");
    document.getElementById("worker-rows").appendChild(row);
    showDirty();
  }

  function removeWorker(button) {
    const rows = button.closest(".workers");
    button.parentElement.remove();
    rows.classList.add("dirty");  // the map changed: marked until saved
    showDirty();
  }

  /* Follow one job: progress, per-worker bars, a growing Gantt chart, host steps, step badges. */
  function follow(el) {
    el.dataset.following = "1";
    const id = el.dataset.job;
    const q = (sel) => el.querySelector(sel);
    const st = {total: 0, done: 0, failed: 0, slots: {}, bars: [], hosts: {}, end: 0, drawn: false};

    const slotRow = (slot) => {
      if (!st.slots[slot]) {
        st.slots[slot] = {n: 0, done: 0, failed: 0};
        const row = document.createElement("div");
        row.className = "worker"; row.dataset.slot = slot;
        row.innerHTML = `<span class="w-name">${esc(slot)}</span><span class="w-track"><span class="w-bar"></span><span class="w-fail"></span></span><span class="w-count"></span>`;
        q(".workers").appendChild(row);
      }
      return st.slots[slot];
    };
    const paintSlot = (slot) => {
      const s = st.slots[slot], row = q(`.worker[data-slot="${CSS.escape(slot)}"]`);
      if (!row) return;
      // the failed share of the bar in red, the rest in green: one failure is one partition's width
      const total = s.n || Math.max(s.done, 1);
      row.querySelector(".w-bar").style.width = `${(100 * (s.done - s.failed)) / total}%`;
      row.querySelector(".w-fail").style.width = `${(100 * s.failed) / total}%`;
      row.querySelector(".w-count").textContent = `${s.done}/${s.n || "?"}` + (s.failed ? ` · ${s.failed} failed` : "");
    };
    const paintProgress = (force) => {
      const pct = force ? 100 : st.total ? Math.floor((100 * st.done) / st.total) : 0;
      q(".progress-bar").style.width = `${pct}%`;
      q(".progress-text").textContent = (st.total ? `${pct}% · ${st.done}/${st.total}` : `${pct}%`) + (st.failed ? ` · ${st.failed} failed` : "");
      q(".progress").classList.toggle("has-failed", st.failed > 0);
      el.dataset.progress = pct;
    };
    let pending = false;
    const drawGantt = () => {
      pending = false;
      const svg = q(".gantt"), slots = Object.keys(st.slots);
      if (!st.bars.length || !slots.length) return;
      const box = q(".gantt-box"), zoom = st.zoom || 1;
      const rowH = 16, left = 110, width = Math.max(320, (box.clientWidth || 600) * zoom), span = Math.max(st.end, 1e-3);
      svg.setAttribute("width", zoom > 1 ? width : "100%");
      q(".gantt-tools").hidden = false;
      q(".zoom-level").textContent = `×${zoom}`;
      const shown = st.bars.length > 4000 ? st.bars.slice(-4000) : st.bars;
      svg.setAttribute("height", slots.length * rowH + 22);
      svg.setAttribute("viewBox", `0 0 ${width} ${slots.length * rowH + 22}`);
      const parts = [];
      slots.forEach((s, i) => parts.push(`<text x="0" y="${i * rowH + 12}" class="lbl">${esc(s)}</text>`));
      for (const b of shown) {
        const i = slots.indexOf(b.slot), x = left + ((width - left - 8) * b.start) / span;
        const w = Math.max(1.5, ((width - left - 8) * (b.end - b.start)) / span);
        parts.push(`<rect x="${x.toFixed(1)}" y="${i * rowH + 2}" width="${w.toFixed(1)}" height="${rowH - 4}" rx="2" class="g ${b.status}"><title>${esc(b.id)} ${b.status} ${(b.end - b.start).toFixed(3)} s</title></rect>`);
      }
      parts.push(`<text x="${left}" y="${slots.length * rowH + 16}" class="axis">0 s</text><text x="${width - 8}" y="${slots.length * rowH + 16}" class="axis" text-anchor="end">${span.toFixed(2)} s</text>`);
      svg.innerHTML = parts.join("");
    };
    const scheduleGantt = () => { if (!pending) { pending = true; requestAnimationFrame(drawGantt); } };
    const zoomTo = (z) => { st.zoom = Math.min(64, Math.max(1, z)); drawGantt(); };  // wider, scrolled sideways
    q(".zoom-in").addEventListener("click", () => zoomTo((st.zoom || 1) * 2));
    q(".zoom-out").addEventListener("click", () => zoomTo((st.zoom || 1) / 2));
    q(".zoom-fit").addEventListener("click", () => zoomTo(1));
    const hostRow = (host) => {
      let row = q(`.host-row[data-host="${CSS.escape(host)}"]`);
      if (!row) {
        row = document.createElement("details"); row.className = "host-row busy"; row.dataset.host = host;
        row.innerHTML = `<summary><span class="h-name">${esc(host)}</span><span class="h-step"></span></summary><pre class="h-log"></pre>`;
        q(".hosts").appendChild(row);
      }
      return row;
    };
    // The cluster's Dask dashboard: a link, its key plots (links, and frames opened on demand, so
    // bokeh is asked only when wanted); where the cluster has none, why (not a dead link).
    const showDashboard = (url) => {
      const box = q(".dashboard");
      if (!url) { box.innerHTML = `<div class="muted no-dashboard">${esc(el.dataset.noDashboard || "no Dask dashboard")}</div>`; return; }
      const base = url.replace(/\/status\/?$/, "");
      const plots = (el.dataset.plots || "").split(";").filter(Boolean).map((p) => p.split("="));
      box.innerHTML = `<div class="dashboard-links">Dask dashboard: <a href="${esc(url)}" target="_blank" rel="noopener">${esc(url)}</a>`
        + ` <span class="muted">· key plots:</span> ${plots.map(([path, label]) => `<a href="${esc(base)}/${esc(path)}" target="_blank" rel="noopener" data-plot="${esc(path)}">${esc(label)}</a>`).join(" · ")}</div>`
        + `<details class="dash-plots"><summary>show the key plots here</summary><div class="plots"></div></details>`;
      const details = box.querySelector(".dash-plots");
      details.addEventListener("toggle", () => {
        const frames = details.querySelector(".plots");
        if (!details.open || frames.childElementCount) return;
        frames.innerHTML = plots.map(([path, label]) => `<figure><figcaption>${esc(label)}</figcaption><iframe src="${esc(base)}/${esc(path)}" title="${esc(label)}" loading="lazy"></iframe></figure>`).join("");
      });
    };
    const stepItem = (step) => document.querySelector(`.step[data-step="${CSS.escape(step)}"]`);

    const handle = (e) => {
      switch (e.kind) {
        case "phase": q(".phase").textContent = e.name + (e.detail ? ` · ${e.detail}` : ""); break;
        case "run_started":
          if (st.total) {  // the next run of a job that runs several (compare modes): its own bars
            Object.assign(st, {done: 0, failed: 0, slots: {}, bars: [], end: 0});
            q(".workers").innerHTML = "";
          }
          st.t0 = e.t || 0;
          st.run = (st.run || 0) + 1;
          if (el.dataset.kind === "compare") q(".phase").textContent = `run ${st.run}: mode ${e.mode}`;
          st.total = e.partitions;
          for (const [slot, n] of Object.entries(e.slots || {})) { slotRow(slot).n = n; paintSlot(slot); }
          break;
        case "partition_done": {
          const s = slotRow(e.slot);
          s.done += 1; st.done += 1;
          if (e.status === "failed") { s.failed += 1; st.failed += 1; }
          const end = e.t - (st.t0 || 0), start = Math.max(0, end - (e.duration_s || 0));
          st.end = Math.max(st.end, end);
          st.bars.push({id: e.id, slot: e.slot, start, end, status: e.status});
          paintSlot(e.slot);
          if (e.error) {
            const box = document.createElement("div");
            box.className = "alert error";
            box.innerHTML = `<b>partition ${esc(e.id)}</b> on ${esc(e.slot)} ${esc(e.host)}<pre>${esc(e.error)}</pre>`;
            q(".errors").appendChild(box);
          }
          break;
        }
        case "cluster_ready": showDashboard(e.dashboard); break;
        case "workers_joining":
          q(".phase").textContent = `workers: ${e.joined}/${e.expected} joined` + (e.needed < e.expected ? ` (starts at ${e.needed})` : "");
          break;
        case "worker_joined": case "worker_left": case "partitions_moved": {
          const text = e.kind === "worker_joined" ? `worker ${e.slot} joined${e.late ? " (late)" : ""}`
            : e.kind === "worker_left" ? `worker ${e.slot} left${e.reason ? ": " + e.reason : ""}`
            : `moved ${e.count} partition${e.count === 1 ? "" : "s"} ${e.source} → ${e.target} (${e.reason})`;
          q(".notices").insertAdjacentHTML("beforeend", `<div class="alert">${esc(text)}</div>`);
          break;
        }
        case "notice": q(".notices").insertAdjacentHTML("beforeend", `<div class="alert ${e.level === "warning" ? "warn" : ""}">${esc(e.text)}</div>`); break;
        case "host_output": {
          // what the host's uv and Cython build print, line by line, under its step in the row's log
          const log = hostRow(e.host).querySelector(".h-log");
          log.appendChild(document.createTextNode(`    ${e.line}\n`));
          if (log.childNodes.length > 4000) log.removeChild(log.firstChild);  // the newest lines of a long build
          break;
        }
        case "host_step": {
          // one row per host: its latest step, and every step with its time in the row's log
          const row = hostRow(e.host);
          row.querySelector(".h-step").textContent = e.step;
          row.querySelector(".h-log").appendChild(document.createTextNode(`${(e.t || 0).toFixed(2)} s  ${e.step}\n`));
          row.className = "host-row" + (e.failed ? " failed" : e.done ? " done" : " busy");
          if (e.failed) row.open = true;
          break;
        }
        case "run_finished": st.finished = true; break;
        case "step_started": {
          const item = stepItem(e.step);
          if (item) { const b = item.querySelector("[data-status]"); b.textContent = "running"; b.className = "badge st-running"; }
          q(".phase").textContent = `step ${e.step}`;
          break;
        }
        case "step_finished": {
          const item = stepItem(e.step);
          st.done += 1;
          if (item) {
            const b = item.querySelector("[data-status]"); b.textContent = e.status; b.className = `badge st-${e.status}`;
            item.querySelector("[data-runs]").innerHTML = (e.run_ids || []).map((r) => `<a href="/runs/${esc(item.dataset.app)}/${esc(r)}">record ${esc(r.slice(0, 15))}</a>`).join(" ");
          }
          break;
        }
      }
    };

    const runButton = el.closest("#run-panel") ? document.getElementById("run-button") : null;
    if (runButton) runButton.disabled = true;  // one run at a time: a double click starts nothing more
    const source = new EventSource(el.dataset.events || `/api/jobs/${id}/events`);
    let messages = 0;
    source.onmessage = (m) => {
      messages += 1; el.dataset.messages = messages;
      for (const e of JSON.parse(m.data)) handle(e);
      paintProgress(false); scheduleGantt();
    };
    source.addEventListener("end", (m) => {
      source.close();
      const job = JSON.parse(m.data);
      el.dataset.status = job.status;
      q(".phase").textContent = "";
      q(".spinner").classList.add("stopped", `st-end-${job.status}`);  // the dot's colour says how it ended
      const cancel = q(".cancel"); if (cancel) cancel.remove();
      const pill = q(".status"); pill.textContent = job.status; pill.classList.add(job.status);
      if (job.status === "ok") paintProgress(true);
      if (runButton) runButton.disabled = false;
      htmx.ajax("GET", el.dataset.result || `/jobs/${id}/result`, {target: q(".job-result"), swap: "innerHTML"});
    });
  }

  function scan(root) {
    (root || document).querySelectorAll("[data-job]:not([data-following])").forEach(follow);
  }
  document.addEventListener("DOMContentLoaded", () => {
    scan(document);
    document.body.addEventListener("input", markDirty);
    document.body.addEventListener("change", markDirty);
    document.body.addEventListener("htmx:afterSettle", showDirty);
    document.body.addEventListener("htmx:afterSettle", (ev) => scan(ev.target.parentElement || document));
  });
  return {tab, copy, addWorker, removeWorker, follow};
})();
