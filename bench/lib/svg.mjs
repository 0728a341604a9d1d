// A scatter plot as a standalone SVG (no scripts, no fonts fetched): one labelled point per
// system, x and y in [0, 1] shown as percentages.

const esc = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

/** A y-axis top that is a round percentage above every point (at least 1 %). */
function niceTop(max) {
  for (const top of [0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1]) if (max <= top) return top;
  return 1;
}

/**
 * points: [{ label, x, y, colour }]; title, xLabel, yLabel, note (a line under the plot).
 * The x axis spans 0–100 %; the y axis 0 to a round value above the highest point.
 */
export function scatterSvg({ points, title, xLabel, yLabel, note }) {
  const W = 760;
  const H = 460;
  const left = 70;
  const right = 220; // room for the legend
  const top = 50;
  const bottom = 80;
  const pw = W - left - right;
  const ph = H - top - bottom;
  const yTop = niceTop(Math.max(...points.map((p) => p.y)));
  const X = (x) => left + x * pw;
  const Y = (y) => top + ph - (y / yTop) * ph;
  const parts = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    `<text x="${left}" y="24" font-size="15" font-weight="bold">${esc(title)}</text>`,
  );
  for (let i = 0; i <= 10; i++) {
    const x = X(i / 10);
    parts.push(`<line x1="${x}" y1="${top}" x2="${x}" y2="${top + ph}" stroke="#eee"/>`);
    parts.push(`<text x="${x}" y="${top + ph + 16}" text-anchor="middle" fill="#444">${i * 10}%</text>`);
  }
  for (let i = 0; i <= 5; i++) {
    const v = (yTop * i) / 5;
    const y = Y(v);
    parts.push(`<line x1="${left}" y1="${y}" x2="${left + pw}" y2="${y}" stroke="#eee"/>`);
    parts.push(`<text x="${left - 6}" y="${y + 4}" text-anchor="end" fill="#444">${(100 * v).toFixed(yTop < 0.05 ? 1 : 0)}%</text>`);
  }
  parts.push(`<rect x="${left}" y="${top}" width="${pw}" height="${ph}" fill="none" stroke="#888"/>`);
  parts.push(`<text x="${left + pw / 2}" y="${top + ph + 36}" text-anchor="middle">${esc(xLabel)}</text>`);
  parts.push(
    `<text x="18" y="${top + ph / 2}" text-anchor="middle" transform="rotate(-90 18 ${top + ph / 2})">${esc(yLabel)}</text>`,
  );
  points.forEach((p, i) => {
    const cx = X(Math.min(1, Math.max(0, p.x)));
    const cy = Y(p.y);
    parts.push(`<circle cx="${cx}" cy="${cy}" r="6" fill="${p.colour}" stroke="#000" stroke-width="0.8"/>`);
    parts.push(`<text x="${cx}" y="${cy - 10 - 12 * (i % 3)}" text-anchor="middle" font-size="11" fill="#222">${i + 1}</text>`);
    const ly = top + 14 + i * 36;
    parts.push(`<circle cx="${left + pw + 20}" cy="${ly - 4}" r="6" fill="${p.colour}" stroke="#000" stroke-width="0.8"/>`);
    parts.push(`<text x="${left + pw + 32}" y="${ly}">${i + 1}. ${esc(p.label)}</text>`);
    parts.push(
      `<text x="${left + pw + 32}" y="${ly + 15}" fill="#555" font-size="11">hit ${(100 * p.x).toFixed(1)}%, stale ${(100 * p.y).toFixed(2)}%</text>`,
    );
  });
  if (note) parts.push(`<text x="${left}" y="${H - 18}" fill="#555" font-size="11">${esc(note)}</text>`);
  parts.push("</svg>");
  return parts.join("\n") + "\n";
}
