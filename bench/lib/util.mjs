// Small helpers shared by the benchmark: statistics, number formatting, text tables, waiting.

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Nearest-rank percentile of an unsorted array of numbers. */
export function percentile(values, p) {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

export const median = (values) => percentile(values, 50);

export const mean = (values) => values.reduce((a, b) => a + b, 0) / values.length;

/** 12345.6 -> "12,346" */
export const int = (n) => (Number.isFinite(n) ? Math.round(n).toLocaleString("en-US") : "n/a");

/** milliseconds with a precision that suits their size */
export function ms(n) {
  if (!Number.isFinite(n)) return "n/a";
  if (n < 10) return `${n.toFixed(2)} ms`;
  if (n < 100) return `${n.toFixed(1)} ms`;
  return `${Math.round(n).toLocaleString("en-US")} ms`;
}

export const ratio = (n) => (Number.isFinite(n) ? `${n.toFixed(2)}×` : "n/a");

export const pct = (part, whole) => (whole > 0 ? `${((100 * part) / whole).toFixed(1)}%` : "n/a");

/** Lays out rows of cells as left-aligned columns (numbers right-aligned), indented. */
export function table(rows, indent = "  ") {
  const widths = [];
  for (const row of rows) row.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, String(c).length)));
  const numeric = (s) => /^[-+]?[\d,.]+(\s?(ms|B|×|%|µs))?$/.test(s);
  return rows
    .map((row) =>
      indent +
      row
        .map((c, i) => {
          const s = String(c);
          if (i === row.length - 1 && !numeric(s)) return s;
          return numeric(s) && i > 0 ? s.padStart(widths[i]) : s.padEnd(widths[i]);
        })
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

/** Calls fn until it returns a truthy value, or throws `what` after timeoutMs. */
export async function until(what, fn, timeoutMs = 10_000, stepMs = 100) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await fn();
    if (last?.ok ?? last) return last;
    await sleep(stepMs);
  }
  throw new Error(`${what} (still not true after ${timeoutMs / 1000} s${last?.detail ? `: ${last.detail}` : ""})`);
}
