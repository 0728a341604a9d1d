// A small HTTP/1.1 client over node:http with keep-alive, for the sequential parts of the benchmark
// (setup, write → read latency, fan-out). Node's global fetch is not used: importing Miniflare
// replaces its dispatcher, and a pooled connection the server has closed fails the next request.

import http from "node:http";

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

function once(base, method, path, headers, body) {
  return new Promise((resolve, reject) => {
    const req = http.request(new URL(path, base), { method, headers, agent }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        resolve({ status: res.statusCode, headers: res.headers, text, bytes: Buffer.byteLength(text) });
      });
      res.on("error", reject);
    });
    req.setTimeout(60_000, () => req.destroy(new Error(`${method} ${path}: no answer within 60 s`)));
    req.on("error", (e) => {
      e.reused = req.reusedSocket;
      reject(e);
    });
    req.end(body);
  });
}

/**
 * Sends one request (`json`, or a `body` string as is) and reads the whole answer:
 * { status, headers, text, bytes, json() }.
 * A request that fails on a reused keep-alive connection the server had closed is sent again once.
 */
export async function request(base, method, path, { headers = {}, json, body: raw } = {}) {
  const h = { ...headers };
  let body = raw;
  if (json !== undefined) {
    body = JSON.stringify(json);
    h["content-type"] = "application/json";
  }
  let answer;
  try {
    answer = await once(base, method, path, h, body);
  } catch (e) {
    if (!e.reused) throw e;
    answer = await once(base, method, path, h, body);
  }
  answer.json = () => {
    try {
      return JSON.parse(answer.text);
    } catch {
      throw new Error(`${method} ${path}: answer ${answer.status} is not JSON: ${answer.text.slice(0, 300)}`);
    }
  };
  return answer;
}

/** A client bound to one base URL, sending `defaults` headers with every request. */
export function client(base, defaults = {}) {
  const call = (method) => (path, opts = {}) =>
    request(base, method, path, { ...opts, headers: { ...defaults, ...opts.headers } });
  return { base, get: call("GET"), put: call("PUT"), post: call("POST"), patch: call("PATCH"), delete: call("DELETE") };
}

/** Throws unless the answer has the expected status. */
export function expectStatus(answer, status, what) {
  if (answer.status !== status) {
    throw new Error(`${what}: expected ${status}, got ${answer.status}: ${answer.text.slice(0, 300)}`);
  }
  return answer;
}

export function closeClients() {
  agent.destroy();
}
