// Closed-loop HTTP load: `threads` client threads, `connections` keep-alive connections, for
// `seconds`. Uses wrk when it is installed, else oha, else autocannon, else a Node loop (which
// competes with the worker for the same cores, and says so).
//
// Every tool's answer is reduced to { requests, seconds, rps, p50_ms, p99_ms, failed }, where
// `failed` counts non-2xx/3xx answers, socket errors and timeouts.

import { execFileSync, spawn } from "node:child_process";
import http from "node:http";
import { fileURLToPath } from "node:url";

const LUA = fileURLToPath(new URL("./report.lua", import.meta.url));

function has(cmd) {
  try {
    execFileSync("bash", ["-c", `command -v ${cmd}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

function version(cmd, args) {
  try {
    return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).split("\n")[0].trim();
  } catch (e) {
    return `${e.stdout ?? ""}${e.stderr ?? ""}`.split("\n")[0].trim();
  }
}

/** Runs a command, collecting its output; rejects on a non-zero exit. */
function run(cmd, args, env) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (err += d));
    child.on("error", reject);
    child.on("close", (code) => {
      if (code === 0) resolve(out);
      else reject(new Error(`${cmd} exited with ${code}: ${err || out}`));
    });
  });
}

const wrk = {
  name: "wrk",
  rotates: true, // can cycle through several paths
  describe: () => `wrk (${version("wrk", ["--version"]).replace(/ Copyright.*/, "")})`,
  async run({ url, method, body, header, paths, threads, connections, seconds }) {
    const env = {};
    if (method) env.WRK_METHOD = method;
    if (body) env.WRK_BODY = body;
    if (header) env.WRK_HEADER = header;
    if (paths) env.WRK_PATHS = paths.join(" ");
    const args = [`-t${threads}`, `-c${connections}`, `-d${seconds}s`, "--timeout", "10s", "-s", LUA, url];
    const out = await run("wrk", args, env);
    const line = out.split("\n").find((l) => l.startsWith("WRK_JSON "));
    if (!line) throw new Error(`wrk printed no summary:\n${out}`);
    const r = JSON.parse(line.slice("WRK_JSON ".length));
    const secs = r.duration_us / 1e6;
    const e = r.errors;
    return {
      requests: r.requests,
      seconds: secs,
      rps: r.requests / secs,
      p50_ms: r.p50_us / 1000,
      p99_ms: r.p99_us / 1000,
      failed: e.connect + e.read + e.write + e.status + e.timeout,
    };
  },
};

const oha = {
  name: "oha",
  describe: () => `oha (${version("oha", ["--version"])})`,
  async run({ url, method, body, header, connections, seconds }) {
    const args = ["-z", `${seconds}s`, "-c", String(connections), "--no-tui", "--output-format", "json"];
    if (method) args.push("-m", method);
    if (body) args.push("-d", body);
    if (header) args.push("-H", header);
    const r = JSON.parse(await run("oha", [...args, url]));
    const ok = Object.entries(r.statusCodeDistribution ?? {}).reduce((n, [s, c]) => n + (s < 400 ? c : 0), 0);
    const all = Object.values(r.statusCodeDistribution ?? {}).reduce((a, b) => a + b, 0);
    const errors = Object.values(r.errorDistribution ?? {}).reduce((a, b) => a + b, 0);
    return {
      requests: all,
      seconds: r.summary.total,
      rps: r.summary.requestsPerSec,
      p50_ms: r.latencyPercentiles.p50 * 1000,
      p99_ms: r.latencyPercentiles.p99 * 1000,
      failed: all - ok + errors,
    };
  },
};

const autocannon = {
  name: "autocannon",
  describe: () => `autocannon (${version("autocannon", ["--version"])})`,
  async run({ url, method, body, header, connections, seconds }) {
    const args = ["-c", String(connections), "-d", String(seconds), "-j"];
    if (method) args.push("-m", method);
    if (body) args.push("-b", body);
    if (header) args.push("-H", header.replace(/:\s*/, "="));
    const r = JSON.parse(await run("autocannon", [...args, url]));
    return {
      requests: r.requests.total,
      seconds: r.duration,
      rps: r.requests.total / r.duration,
      p50_ms: r.latency.p50,
      p99_ms: r.latency.p99,
      failed: (r.non2xx ?? 0) + (r.errors ?? 0) + (r.timeouts ?? 0),
    };
  },
};

const nodeLoop = {
  name: "node",
  rotates: true,
  describe: () => "a Node keep-alive loop (no wrk, oha or autocannon here; it shares the CPU with the worker)",
  async run({ url, method = "GET", body, header, paths, connections, seconds }) {
    const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
    const headers = {};
    if (header) {
      const [k, ...v] = header.split(":");
      headers[k.trim()] = v.join(":").trim();
    }
    const base = new URL(url);
    const targets = (paths ?? [base.pathname + base.search]).map((p) => new URL(p, base));
    const lat = [];
    let failed = 0;
    let n = 0;
    const start = performance.now();
    const end = start + seconds * 1000;
    const one = (target) =>
      new Promise((resolve) => {
        const t0 = performance.now();
        const req = http.request(target, { method, headers, agent }, (res) => {
          res.resume();
          res.on("end", () => {
            if (res.statusCode >= 400) failed++;
            lat.push(performance.now() - t0);
            resolve();
          });
        });
        req.on("error", () => {
          failed++;
          resolve();
        });
        req.end(body);
      });
    await Promise.all(
      Array.from({ length: connections }, async () => {
        while (performance.now() < end) await one(targets[n++ % targets.length]);
      }),
    );
    agent.destroy();
    const secs = (performance.now() - start) / 1000;
    lat.sort((a, b) => a - b);
    const pct = (p) => lat[Math.min(lat.length - 1, Math.ceil((p / 100) * lat.length) - 1)] ?? NaN;
    return { requests: lat.length, seconds: secs, rps: lat.length / secs, p50_ms: pct(50), p99_ms: pct(99), failed };
  },
};

/** The load generator to use: BENCH_LOADGEN if set, else the first one installed. */
export function pickLoadGenerator() {
  const all = [wrk, oha, autocannon, nodeLoop];
  const wanted = process.env.BENCH_LOADGEN;
  if (wanted) {
    const g = all.find((x) => x.name === wanted);
    if (!g) throw new Error(`BENCH_LOADGEN=${wanted}: expected one of ${all.map((x) => x.name).join(", ")}`);
    return g;
  }
  return all.find((g) => g.name === "node" || has(g.name));
}
