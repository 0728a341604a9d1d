// Varnish for the peer benchmark: one varnishd per configuration, in front of the benchmark's
// origin, on 127.0.0.1, in its own working directory, stopped by stop().
//
// The VCL is what a team would write for a JSON API: GET/HEAD are cached whatever the request
// carries, everything else passes to the origin. The TTL is the configuration's; grace and keep
// are 0, so "TTL 1 s" means an object is never served more than 1 s after it was fetched
// (Varnish's default grace of 10 s would serve it up to 11 s, in the background of a refetch).
// With `xkey`, a `PURGE` carrying `xkey-purge: <keys>` removes every object tagged with any of
// those keys (the origin's `xkey` response header): what xkey users send after each write.

import { spawn } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";

import { request } from "./http.mjs";
import { freePort } from "./worker.mjs";
import { sleep } from "./util.mjs";

/** The VCL of one configuration: `ttl` in seconds, `xkey` whether purges by key are accepted. */
export function vcl({ originPort, ttl, xkey }) {
  return `vcl 4.1;
${xkey ? "import xkey;\n" : ""}
${xkey ? 'acl purgers {\n  "127.0.0.1";\n}\n\n' : ""}backend origin {
  .host = "127.0.0.1";
  .port = "${originPort}";
}

sub vcl_recv {
${
  xkey
    ? `  if (req.method == "PURGE") {
    if (client.ip !~ purgers) {
      return (synth(403, "Forbidden"));
    }
    return (synth(200, "Invalidated " + xkey.purge(req.http.xkey-purge) + " objects"));
  }
`
    : ""
}  if (req.method != "GET" && req.method != "HEAD") {
    return (pass);
  }
  return (hash);
}

sub vcl_backend_response {
  set beresp.ttl = ${ttl}s;
  set beresp.grace = 0s;
  set beresp.keep = 0s;
}

sub vcl_deliver {
  if (obj.hits > 0) {
    set resp.http.x-cache = "HIT";
  } else {
    set resp.http.x-cache = "MISS";
  }
}
`;
}

/** Starts varnishd in the foreground (`-F`). Returns { url, stop, pid }. */
export async function startVarnish({ originPort, ttl, xkey, log }) {
  const dir = mkdtempSync(path.join(os.tmpdir(), "edgecache-peers-varnish-"));
  chmodSync(dir, 0o755); // varnishd reads the VCL as its own unprivileged user
  const vclPath = path.join(dir, "bench.vcl");
  writeFileSync(vclPath, vcl({ originPort, ttl, xkey }));
  const port = await freePort();
  const args = ["-F", "-n", path.join(dir, "n"), "-a", `127.0.0.1:${port}`, "-T", "none", "-f", vclPath];
  args.push("-s", "malloc,256m");
  // In the benchmark's process group (not detached), so bench/peers.sh's clean-up takes it along.
  const child = spawn("varnishd", args, { stdio: ["ignore", "pipe", "pipe"] });
  child.stdout.pipe(log, { end: false });
  child.stderr.pipe(log, { end: false });
  let exited = null;
  child.on("exit", (code, signal) => (exited = signal ?? code));
  const stop = async () => {
    try {
      child.kill("SIGTERM");
      for (let i = 0; i < 30 && exited === null; i++) await sleep(100);
      if (exited === null) child.kill("SIGKILL");
    } catch {
      // already gone
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (exited !== null) {
      await stop();
      throw new Error(`varnishd exited (${exited}) before answering; see its log`);
    }
    try {
      if ((await request(url, "GET", "/v1/items/i00000")).status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error("varnishd did not answer within 20 s");
    }
    await sleep(200);
  }
  return { url, stop, pid: child.pid };
}
