// A/B of two builds of the worker on one route: both are started side by side (Miniflare, the
// worker's own socket) and loaded in turn, `ROUNDS` short wrk runs each, so a machine that
// speeds up or slows down during the run affects both alike. Which build goes first alternates
// from round to round: on these 2-core machines the first of two back-to-back runs was seen
// ~8 % faster whichever build it was. Prints req/s per round, the median of each, and their
// ratio. Loopback only, bounded (rounds × 2 × seconds).
//
//   node bench/ab.mjs <root A> <root B> [path] [rounds] [seconds]
// Each root is a checkout with a built `build/` (e.g. a `git worktree` of the older commit);
// the seeded D1 state comes from `scripts/prepare-state.sh` of root A.

import { execFileSync, spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, rmSync, createWriteStream } from "node:fs";
import os from "node:os";
import path from "node:path";
import { startMiniflare } from "./lib/worker.mjs";

const [rootA, rootB, route = "/v1/users?limit=10", rounds = "6", seconds = "4"] = process.argv.slice(2);
if (!rootA || !rootB) {
  console.error("usage: node bench/ab.mjs <root A> <root B> [path] [rounds] [seconds]");
  process.exit(2);
}
const template = execFileSync("bash", [path.join(rootA, "scripts/prepare-state.sh")], { encoding: "utf8" }).trim();
const workers = [];
const dirs = [];
try {
  for (const root of [rootA, rootB]) {
    const state = mkdtempSync(path.join(os.tmpdir(), "edgecache-ab-"));
    dirs.push(state);
    cpSync(template, state, { recursive: true });
    const log = createWriteStream(path.join(state, "worker.log"));
    const w = await startMiniflare({ root: path.resolve(root), state, vars: { EDGECACHE_TEST_HOOKS: "1" }, log });
    workers.push(w);
    for (let i = 0; i < 5; i++) await fetch(w.url + route).then((r) => r.arrayBuffer());
  }
  const results = [[], []];
  for (let r = 0; r < Number(rounds); r++) {
    for (const i of r % 2 === 0 ? [0, 1] : [1, 0]) {
      const out = spawnSync("wrk", ["-t2", "-c16", `-d${seconds}s`, workers[i].url + route], { encoding: "utf8" });
      const rps = Number((out.stdout.match(/Requests\/sec:\s+([\d.]+)/) ?? [])[1]);
      results[i][r] = rps;
    }
    console.log(`round ${r + 1}: A ${results[0][r].toFixed(0)} req/s, B ${results[1][r].toFixed(0)} req/s`);
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const [a, b] = results.map(median);
  console.log(`${route}: median A ${a.toFixed(0)} req/s, B ${b.toFixed(0)} req/s, B/A ${(b / a).toFixed(3)}×`);
} finally {
  for (const w of workers) await w.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
}
