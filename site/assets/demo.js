// The live demo on the home page: reads of the demo tenant's sandbox through the real read
// path, writes through /_edgecache/demo/write (the coordinator's write path, rate-limited), and a
// read with the write's read-your-writes token. No dependencies; everything else on the page
// works without this script.
"use strict";

(function () {
  const app = document.getElementById("demo-app");
  if (!app) return;
  app.hidden = false;
  const tenant = app.dataset.tenant;
  const $ = (id) => document.getElementById(id);
  const REASONS = {
    record_written: "it contains the written record",
    list_predicate_matched: "the row's old or new values match its filter and can reach its page",
    view_dependency: "it reads the written table",
    manual: "an operator invalidated it",
    late_registration: "it registered after a write that touched it",
    recovery: "its coordinator recovered from an unfinished write",
  };
  const SPARED = {
    record: "it holds another record",
    list: "neither the old nor the new row matches its filter or reaches its page",
    opaque: "nothing in this write concerns it",
  };
  let lastWrite = null;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    for (const c of children) node.append(c);
    return node;
  }

  function show(out, ...nodes) {
    out.replaceChildren(...nodes);
  }

  function failure(out, err) {
    show(out, el("p", { class: "error", role: "alert" }, String(err.message || err)));
  }

  async function call(method, url, headers, body) {
    const resp = await fetch(url, {
      method,
      headers: Object.assign({ accept: "application/json" }, headers || {}),
      body: body === undefined ? undefined : JSON.stringify(body),
      // The default mode: a stored answer is revalidated with If-None-Match (the edge answers a
      // cheap 304 with fresh headers). "no-store" or "reload" would send Cache-Control:
      // no-cache, which asks the edge to skip its cache and would make every read a MISS.
    });
    const text = await resp.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch (_) {
      json = null;
    }
    if (!resp.ok) {
      const e = json && json.error;
      throw new Error(e ? `${resp.status} ${e.code}: ${e.message}` : `${resp.status} ${text}`);
    }
    return { resp, json };
  }

  function summary(json) {
    if (json && Array.isArray(json.data)) {
      if (json.data.length === 0) return "no rows";
      return json.data.map((u) => `${u.id} ${u.name} (${u.city})`).join(", ");
    }
    const u = json && json.data;
    if (u && u.id) return `${u.id} ${u.name} (${u.city}), plan ${u.plan}`;
    return JSON.stringify(json);
  }

  function readResult(path, { resp, json }) {
    const outcome = resp.headers.get("x-edgecache") || "?";
    const dl = el(
      "dl",
      { class: "facts-list" },
      el("dt", {}, "x-edgecache"),
      el("dd", {}, el("strong", { class: `outcome o-${outcome.toLowerCase()}`, "data-outcome": outcome }, outcome)),
      el("dt", {}, "age"),
      el("dd", {}, `${resp.headers.get("age") || "0"} s`),
      el("dt", {}, "deps (table = fill stamp)"),
      el("dd", {}, el("code", {}, resp.headers.get("x-edgecache-deps") || "none")),
      el("dt", {}, "data"),
      el("dd", { class: "data" }, summary(json)),
    );
    return el("div", { class: "result", "data-path": path }, el("p", {}, el("code", {}, `GET ${path}`)), dl);
  }

  async function read(path, headers) {
    return call("GET", `/t/${tenant}${path}`, Object.assign({ "x-edgecache-debug": "1" }, headers || {}));
  }

  $("demo-read").addEventListener("click", async () => {
    const path = $("demo-url").value;
    const out = $("demo-read-out");
    try {
      show(out, readResult(path, await read(path)));
    } catch (e) {
      failure(out, e);
    }
  });

  $("demo-read-all").addEventListener("click", async () => {
    const out = $("demo-read-out");
    try {
      const results = [];
      for (const option of $("demo-url").options) {
        results.push(readResult(option.value, await read(option.value)));
      }
      show(out, ...results);
    } catch (e) {
      failure(out, e);
    }
  });

  function keyPath(key) {
    const i = key.indexOf(":");
    return i < 0 ? key : key.slice(i + 1);
  }

  function keyList(title, items, state, why) {
    if (items.length === 0) return el("p", {}, `${title}: none.`);
    return el(
      "div",
      {},
      el("h4", {}, title),
      el(
        "ul",
        { class: `keys ${state}` },
        ...items.map((k) =>
          el(
            "li",
            { "data-key": keyPath(k.key), "data-state": state },
            el("code", {}, keyPath(k.key)),
            ` ${why(k)}`,
          ),
        ),
      ),
    );
  }

  $("demo-write").addEventListener("click", async () => {
    const id = $("demo-id").value;
    const city = $("demo-city").value;
    const out = $("demo-write-out");
    try {
      const { json } = await call(
        "POST",
        "/_edgecache/demo/write",
        { "content-type": "application/json" },
        { id, set: { city } },
      );
      lastWrite = { id, city, token: json.token };
      $("demo-fresh").disabled = false;
      const refilled = (k) => (k.refilled ? "; refreshed from the origin in the background" : "");
      show(
        out,
        el("p", {}, "Wrote ", el("code", {}, `PATCH /v1/demo_users/${id} {"city":"${city}"}`), ". Token: ", el("code", { id: "demo-token" }, json.token)),
        keyList("Invalidated", json.stale, "stale", (k) => `: ${REASONS[k.reason] || k.reason}${refilled(k)}.`),
        keyList("Spared (still cached)", json.spared, "spared", (k) => `: ${SPARED[k.kind] || k.kind}.`),
        el("p", { class: "hint" }, "Only keys read since the last reset are cached, so read a few first to see more."),
      );
    } catch (e) {
      failure(out, e);
    }
  });

  $("demo-fresh").addEventListener("click", async () => {
    const out = $("demo-fresh-out");
    if (!lastWrite) return;
    const path = `/v1/demo_users/${lastWrite.id}`;
    try {
      const answer = await read(path, { "x-edgecache-min-seq": lastWrite.token });
      const fresh = Boolean(answer.json && answer.json.data && answer.json.data.city === lastWrite.city);
      show(
        out,
        el("p", {}, "Sent ", el("code", {}, `x-edgecache-min-seq: ${lastWrite.token}`)),
        readResult(path, answer),
        el("p", { class: fresh ? "ok" : "error", "data-fresh": String(fresh) }, fresh ? `Fresh: the city is ${lastWrite.city}, as written.` : "Not the written value."),
      );
    } catch (e) {
      failure(out, e);
    }
  });

  $("demo-reset").addEventListener("click", async () => {
    const out = $("demo-write-out");
    try {
      const { json } = await call("POST", "/_edgecache/demo/reset");
      lastWrite = null;
      $("demo-fresh").disabled = true;
      show(out, el("p", { class: "ok" }, `Sandbox reset: ${json.rows} rows restored, every cached key of demo_users invalidated (seq ${json.seq}).`));
    } catch (e) {
      failure(out, e);
    }
  });
})();
