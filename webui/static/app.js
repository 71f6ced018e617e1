// ledgergate dashboard: live updates over Server-Sent Events. The pages
// work without it; this only keeps them current.
"use strict";
(function () {
  if (!document.body.dataset.live || !window.EventSource) return;

  const $ = (sel) => document.querySelector(sel);
  const fmtTime = (ms) => new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
  const cell = (tag, text, attrs) => {
    const el = document.createElement(tag);
    if (text !== undefined) el.textContent = text;
    for (const k in attrs || {}) el.setAttribute(k, attrs[k]);
    return el;
  };
  // fmtBytes is webui.go's fmtBytes: powers of 1000.
  const fmtBytes = (n) => n >= 1e9 ? (n / 1e9).toFixed(1) + " GB" : n >= 1e6 ? (n / 1e6).toFixed(1) + " MB" :
    n >= 1e3 ? (n / 1e3).toFixed(1) + " kB" : n + " B";
  const blockLink = (h) => { const a = cell("a", String(h)); a.href = "/ledger/blocks/" + h; return a; };

  function setField(name, value) {
    document.querySelectorAll('[data-field="' + name + '"]').forEach((el) => {
      if (name === "view_changing" || name.startsWith("warn_")) { el.hidden = !value; return; }
      el.textContent = value;
    });
  }

  function drawChart(svg, points) {
    const keys = svg.dataset.chart.split(",");
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    if (points.length < 2) return;
    let max = 0;
    keys.forEach((k) => points.forEach((p) => { if (p[k] > max) max = p[k]; }));
    if (max <= 0) max = 1;
    const label = svg.parentNode.querySelector("[data-max]");
    if (label) label.textContent = "top " + (max >= 10 ? max.toFixed(0) : max.toFixed(1));
    const t0 = points[0].t, span = Math.max(1, points[points.length - 1].t - t0);
    keys.forEach((k, i) => {
      const pts = points.filter((p) => p[k] >= 0)
        .map((p) => ((p.t - t0) / span * 300).toFixed(1) + "," + (98 - p[k] / max * 94).toFixed(1));
      const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
      line.setAttribute("points", pts.join(" "));
      line.setAttribute("class", "s" + i);
      svg.appendChild(line);
    });
  }

  function refusals(rows) {
    const body = $("#refusals");
    if (!body) return;
    body.replaceChildren();
    if (!rows || rows.length === 0) { const tr = cell("tr"); tr.appendChild(cell("td", "None.", { colspan: 4 })); body.appendChild(tr); return; }
    rows.forEach((r) => {
      const tr = cell("tr");
      tr.append(cell("th", r.reason, { scope: "row" }), cell("td", r.ledger), cell("td", r.mqtt), cell("td", r.coap));
      body.appendChild(tr);
    });
  }

  // prependBlocks adds the blocks a table does not show yet, newest on top.
  function prependBlocks(body, blocks, row) {
    if (!body || !blocks) return;
    const first = body.querySelector("tr th a");
    const shown = first ? Number(first.textContent) : 0;
    if (!first) body.replaceChildren();
    blocks.filter((b) => b.height > shown).reverse().forEach((b) => {
      const tr = row(b);
      tr.className = "new";
      body.insertBefore(tr, body.firstChild);
    });
    while (body.rows.length > 50) body.deleteRow(body.rows.length - 1);
  }

  function peers(list) {
    (list || []).forEach((p) => {
      const tr = document.querySelector('tr[data-peer="' + CSS.escape(p.id) + '"]');
      if (!tr) return;
      tr.querySelector('[data-col="connected"]').textContent = p.connected ? "yes" : "no";
      tr.querySelector('[data-col="height"]').textContent = p.height;
      tr.querySelector('[data-col="lag"]').textContent = p.lag;
    });
  }

  function connected(ids) {
    const set = new Set(ids || []);
    document.querySelectorAll("[data-device]").forEach((el) => {
      // Only rows and fields that show it: other pages (drift, batches)
      // name devices in data-device too.
      const c = el.querySelector('[data-col="connected"]');
      if (!c) return;
      const now = set.has(el.dataset.device);
      const was = c.textContent.trim() !== "no";
      if (now !== was) c.textContent = now ? "yes" : "no";
    });
  }

  // deviceRecords reloads a device page's charts and records (drawn by
  // the server) when blocks commit; the server answers 204 if the device
  // has no new record.
  let recordsBusy = false, recordsHeight = -1;
  function deviceRecords(height) {
    const el = document.getElementById("device-records");
    if (!el || recordsBusy || height === recordsHeight) return;
    recordsBusy = true;
    recordsHeight = height;
    fetch(el.dataset.recordsSrc + "?n=" + encodeURIComponent(el.dataset.n), { credentials: "same-origin" })
      .then((r) => {
        const n = r.headers.get("X-Record-Count");
        if (r.status !== 200 || n === null) return undefined;
        return r.text().then((html) => { el.innerHTML = html; el.dataset.n = n; });
      })
      .catch(() => { recordsHeight = -1; }) // ask again at the next update
      .finally(() => { recordsBusy = false; });
  }

  const es = new EventSource("/events");
  es.addEventListener("expired", () => { es.close(); location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search); });
  es.addEventListener("update", (ev) => {
    const u = JSON.parse(ev.data);
    setField("height", u.height);
    if (u.counts) setField("txs", u.counts.txs);
    setField("view", u.view);
    setField("primary", u.primary);
    setField("view_changing", u.view_changing);
    setField("n_connected", u.n_connected);
    if (u.storage) {
      setField("storage_used", fmtBytes(u.storage.used_bytes));
      setField("pruned_height", u.storage.pruned_height);
      setField("disk_free", fmtBytes(u.storage.disk_free_bytes));
      setField("warn_nearly_full", u.storage.nearly_full);
      setField("warn_low_disk", u.storage.low_disk);
    }
    const pts = u.points || [];
    const last = pts[pts.length - 1];
    if (last) setField("tx_rate", last.tx_rate.toFixed(1));
    // The latency of the last second that committed something.
    const lat = pts.filter((p) => p.p50_ms >= 0).pop();
    if (lat) {
      setField("p50_ms", lat.p50_ms.toFixed(1));
      setField("p99_ms", lat.p99_ms.toFixed(1));
    }
    document.querySelectorAll("svg[data-chart]").forEach((svg) => drawChart(svg, pts));
    refusals(u.refusals);
    deviceRecords(u.height);
    peers(u.peers);
    connected(u.connected);
    prependBlocks($("#live-blocks"), u.blocks, (b) => {
      const tr = cell("tr");
      const th = cell("th", undefined, { scope: "row" }); th.appendChild(blockLink(b.height));
      tr.append(th, cell("td", fmtTime(b.time)), cell("td", b.txs), cell("td", b.kinds));
      return tr;
    });
    prependBlocks($("#ledger-blocks"), u.blocks, (b) => {
      const tr = cell("tr");
      const th = cell("th", undefined, { scope: "row" }); th.appendChild(blockLink(b.height));
      tr.append(th, cell("td", fmtTime(b.time)), cell("td", b.txs), cell("td", b.proposer), cell("td"));
      tr.lastChild.appendChild(cell("code", b.hash.slice(0, 16) + "…"));
      return tr;
    });
  });
})();
