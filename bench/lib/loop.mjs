// A closed loop of writers: each client sends its next request as soon as the last is answered.
// Shared by the writers table (writes.mjs) and the writers' profile (profile-writers.mjs).

/**
 * `clients` closed loops of `send(client, i)` for `seconds`. Per request: the latency (ms); with
 * the test hooks' headers, its stay in the worker by the worker's clock (`inWorker`, from
 * `x-edgecache-test-edge-ms`), the edge's call to the coordinator (`callMs`), how long it waited
 * before the handler started (`unread`, from `x-edgecache-test-edge-at`, the same wall clock as
 * this process's); and when it was sent and answered (`spans`, µs of the monotonic clock V8's
 * CPU profiles use, to line requests up with a profile). Also the rate and the failures.
 */
export async function closedLoop(clients, seconds, send) {
  const latencies = [];
  const inWorker = [];
  const callMs = [];
  const unread = [];
  const spans = [];
  let failed = 0;
  const deadline = performance.now() + seconds * 1000;
  const t0 = performance.now();
  const micros = () => Number(process.hrtime.bigint() / 1000n);
  await Promise.all(
    Array.from({ length: clients }, async (_, c) => {
      for (let i = 0; performance.now() < deadline; i++) {
        const t = performance.now();
        const sent = micros();
        const a = await send(c, i);
        latencies.push(performance.now() - t);
        spans.push([sent, micros()]);
        const edge = a.headers["x-edgecache-test-edge-ms"];
        if (edge !== undefined) inWorker.push(Number(edge));
        const call = a.headers["x-edgecache-test-call-ms"];
        if (call !== undefined) callMs.push(Number(call));
        const at = a.headers["x-edgecache-test-edge-at"];
        if (at !== undefined) unread.push(Number(at) - (performance.timeOrigin + t));
        if (a.status !== 200) failed++;
      }
    }),
  );
  return { latencies, inWorker, callMs, unread, spans, failed, rps: latencies.length / ((performance.now() - t0) / 1000) };
}
