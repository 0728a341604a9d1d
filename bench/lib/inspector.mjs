// workerd's V8 inspector as the profilers use it (bench/profile.mjs, bench/profile-writers.mjs):
// its targets, and a minimal Chrome DevTools Protocol session over one target's WebSocket (the
// `ws` package, which wrangler brings into node_modules).

import { createRequire } from "node:module";
import path from "node:path";

import { request } from "./http.mjs";
import { sleep } from "./util.mjs";

/** The targets the inspector on `port` lists with a WebSocket, waiting up to 10 s for it. */
export async function inspectorTargets(port) {
  for (let i = 0; i < 40; i++) {
    try {
      const a = await request(`http://127.0.0.1:${port}`, "GET", "/json");
      const t = a.json().filter((t) => t.webSocketDebuggerUrl);
      if (t.length) return t;
    } catch {
      // not up yet
    }
    await sleep(250);
  }
  throw new Error(`no inspector target on port ${port}`);
}

/** A session on `target`: `send(method, params)` resolves to the result; `root` holds node_modules. */
export async function session(target, root) {
  const WebSocket = createRequire(import.meta.url)(path.join(path.resolve(root), "node_modules/ws"));
  const ws = new WebSocket(target.webSocketDebuggerUrl);
  await new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("error", reject);
  });
  let id = 0;
  const pending = new Map();
  ws.on("message", (data) => {
    const msg = JSON.parse(data);
    if (msg.id && pending.has(msg.id)) {
      const { resolve, reject } = pending.get(msg.id);
      pending.delete(msg.id);
      if (msg.error) reject(new Error(JSON.stringify(msg.error)));
      else resolve(msg.result);
    }
  });
  const send = (method, params = {}) =>
    new Promise((resolve, reject) => {
      pending.set(++id, { resolve, reject });
      ws.send(JSON.stringify({ id, method, params }));
    });
  return { send, close: () => ws.close(), id: target.id, title: target.title ?? target.id };
}
