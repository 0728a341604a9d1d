// The website in a real browser: headless Chromium (Debian's `chromium`) driven by
// playwright-core loads the site from a running worker and checks what a visitor would notice.
// Usage: node tests/site/browser.mjs http://127.0.0.1:PORT [screenshot dir]
// Prints one line per check; exits 1 at the first failure, with what was seen.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const base = process.argv[2];
const shots = process.argv[3] || "target/site-screenshots";
if (!base) {
  console.error("usage: node tests/site/browser.mjs <base URL> [screenshot dir]");
  process.exit(2);
}
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const MAX_PAGE_BYTES = 150 * 1024;

function check(ok, what, seen) {
  if (!ok) {
    throw new Error(`${what}${seen === undefined ? "" : `\n  seen: ${typeof seen === "string" ? seen : JSON.stringify(seen, null, 2)}`}`);
  }
  console.log(`ok ${what}`);
}

// Text whose contrast with its background is under WCAG AA's 4.5:1.
function lowContrast(page) {
  return page.evaluate(() => {
    const rgb = (s) => s.match(/[\d.]+/g).slice(0, 3).map(Number);
    const lum = (c) => {
      const [r, g, b] = c.map((v) => {
        v /= 255;
        return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
      });
      return 0.2126 * r + 0.7152 * g + 0.0722 * b;
    };
    const bgOf = (el) => {
      for (let e = el; e; e = e.parentElement) {
        const c = getComputedStyle(e).backgroundColor;
        if (c && !c.startsWith("rgba(0, 0, 0, 0)") && c !== "transparent") return rgb(c);
      }
      return [255, 255, 255];
    };
    const ratio = (el) => {
      const a = lum(rgb(getComputedStyle(el).color));
      const b = lum(bgOf(el));
      return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    };
    const els = [...document.querySelectorAll("p, li, a, th, td, label, button, figcaption, h1, h2, h3")].filter((e) => e.offsetParent);
    return els.map((e) => ({ text: e.textContent.trim().slice(0, 40), ratio: ratio(e) })).filter((r) => r.ratio < 4.5);
  });
}

// Everything a page does that a visitor's browser would complain about.
function watch(page, origin) {
  const seen = { console: [], failed: [], foreign: [], bad: [], bytes: new Map() };
  page.on("console", (m) => m.type() === "error" && seen.console.push(m.text()));
  page.on("pageerror", (e) => seen.console.push(`uncaught: ${e.message}`));
  page.on("requestfailed", (r) => {
    const error = r.failure()?.errorText ?? "";
    // The browser's own favicon fetch is abandoned (ERR_ABORTED) when the test moves on before
    // it lands: no failure a visitor sees (the favicon itself is checked by tests/site.rs).
    if (error === "net::ERR_ABORTED" && new URL(r.url()).pathname === "/favicon.svg") return;
    seen.failed.push(`${r.url()}: ${error}`);
  });
  page.on("request", (r) => {
    if (!r.url().startsWith(origin) && !r.url().startsWith("data:")) seen.foreign.push(r.url());
  });
  page.on("response", async (r) => {
    if (r.status() >= 400) seen.bad.push(`${r.status()} ${r.request().method()} ${r.url()}`);
    try {
      const type = r.request().resourceType();
      if (type !== "image" && r.status() < 300) seen.bytes.set(r.url(), (await r.body()).length);
    } catch {
      // a redirect or an aborted response has no body
    }
  });
  return seen;
}

// `allowedBad`: error responses the test provoked on purpose (each is also logged by Chromium
// as a console error naming its status, which is allowed as many times as they occurred).
function clean(seen, allowedBad = []) {
  const bad = seen.bad.filter((b) => !allowedBad.some((a) => b.includes(a)));
  const provoked = seen.bad.filter((b) => allowedBad.some((a) => b.includes(a)));
  const errors = [...seen.console];
  for (const p of provoked) {
    const status = p.split(" ")[0];
    const i = errors.findIndex((e) => e.startsWith(`Failed to load resource: the server responded with a status of ${status} `));
    if (i >= 0) errors.splice(i, 1);
  }
  check(errors.length === 0, "no console errors", errors);
  check(seen.failed.length === 0, "no failed requests", seen.failed);
  check(seen.foreign.length === 0, "no third-party requests", seen.foreign);
  check(bad.length === 0, "no unexpected error responses", bad);
}

mkdirSync(shots, { recursive: true });
// playwright starts Chromium with a fresh temporary profile (--user-data-dir) of its own and
// removes it afterwards; the switches keep Chromium from calling home on a closed network.
const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const origin = new URL(base).origin;
let failed = false;
try {
  // ---- Desktop: the home page, its quality, the demo end to end.
  const desktop = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await desktop.newPage();
  const seen = watch(page, origin);
  const home = await page.goto(`${base}/`, { waitUntil: "load" });
  check(home.status() === 200, "the home page answers 200", home.status());
  await page.waitForLoadState("networkidle");

  const title = await page.title();
  check(/EdgeCache/.test(title) && title.length < 80, "a sensible <title>", title);
  const meta = async (sel) => page.locator(sel).first().getAttribute("content");
  check((await meta('meta[name="description"]'))?.length > 50, "a meta description");
  check((await meta('meta[property="og:title"]')) === title, "an Open Graph title");
  check(Boolean(await meta('meta[property="og:description"]')), "an Open Graph description");
  for (const [sel, what] of [["header", "banner"], ["nav", "navigation"], ["main", "main"], ["footer", "contentinfo"]]) {
    check((await page.locator(sel).count()) >= 1, `a ${what} landmark (<${sel}>)`);
  }
  check((await page.locator("h1").count()) === 1, "one <h1>");
  for (const section of ["problem", "how", "figures", "demo-title", "qs", "beta-title"]) {
    check(await page.locator(`#${section}`).isVisible(), `section #${section} is shown`);
  }
  const svgs = await page.locator("main svg[role=img]").evaluateAll((els) => els.map((e) => Boolean(e.querySelector("title")?.textContent)));
  check(svgs.length >= 2 && svgs.every(Boolean), "the picture and the diagram are labelled images", svgs);
  const tableText = await page.locator("section[aria-labelledby=figures]").innerText();
  check(tableText.includes("6,204") && /2 December 2026/.test(tableText), "the measured figures and when they were taken");

  const unlabelled = await page.locator("input, select, textarea").evaluateAll((els) =>
    els.filter((e) => !(e.id && document.querySelector(`label[for="${e.id}"]`)) && !e.getAttribute("aria-label")).map((e) => e.outerHTML));
  check(unlabelled.length === 0, "every form control has a label", unlabelled);

  check((await lowContrast(page)).length === 0, "text contrast is at least 4.5:1 (light)", await lowContrast(page));

  // Keyboard: the first Tab lands on the skip link, which moves focus to <main>.
  await page.keyboard.press("Tab");
  check((await page.evaluate(() => document.activeElement.className)) === "skip", "the first Tab reaches the skip link");
  await page.keyboard.press("Enter");
  check((await page.evaluate(() => document.activeElement.id)) === "main", "the skip link moves focus to the content");

  const weight = [...seen.bytes.values()].reduce((a, b) => a + b, 0);
  check(weight > 0 && weight < MAX_PAGE_BYTES, `the page weighs ${(weight / 1024).toFixed(1)} KB before images (< 150 KB)`, Object.fromEntries(seen.bytes));
  await page.screenshot({ path: join(shots, "desktop.png"), fullPage: true });

  // The demo: reset, read twice (origin then isolate memory), write, see the invalidated
  // keys, read with the write's token.
  await page.locator("#demo-app").scrollIntoViewIfNeeded();
  check(await page.locator("#demo-app").isVisible(), "the demo is shown when JavaScript runs");
  await page.click("#demo-reset");
  await page.locator("#demo-write-out .ok").waitFor();
  check(/Sandbox reset: 6 rows restored/.test(await page.locator("#demo-write-out").innerText()), "the reset restores the seed");

  const outcome = async () => page.locator("#demo-read-out [data-outcome]").first().getAttribute("data-outcome");
  await page.selectOption("#demo-url", "/v1/demo_users/u1");
  await page.click("#demo-read");
  await page.locator("#demo-read-out [data-outcome]").waitFor();
  const first = await outcome();
  check(first === "MISS" || first === "HIT-L2", "a first read after the reset comes from the origin (or the refilled L2)", first);
  const readText = await page.locator("#demo-read-out").innerText();
  check(/demo_users=\d+/.test(readText) && /u1 Ada \(Lisbon\)/.test(readText), "the read shows its deps and the data", readText);
  // The fill is stored just after the first answer; a read racing it may miss once more.
  const outcomes = [first];
  for (let i = 0; i < 5 && outcomes.at(-1) !== "HIT-L1"; i++) {
    await page.waitForTimeout(150);
    await page.evaluate(() => document.getElementById("demo-read-out").replaceChildren());
    await page.click("#demo-read");
    await page.locator("#demo-read-out [data-outcome]").waitFor();
    outcomes.push(await outcome());
  }
  check(outcomes.length <= 3 && outcomes.at(-1) === "HIT-L1", "reading it again is HIT-L1 (isolate memory)", outcomes);
  await page.click("#demo-read-all");
  await page.waitForFunction(() => document.querySelectorAll("#demo-read-out .result").length === 6);
  check(true, "all six URLs read");

  await page.selectOption("#demo-id", "u1");
  await page.selectOption("#demo-city", "Osaka");
  await page.click("#demo-write");
  await page.locator("#demo-write-out [data-state]").first().waitFor();
  const states = await page.locator("#demo-write-out [data-state]").evaluateAll((els) =>
    Object.fromEntries(els.map((e) => [e.dataset.key, e.dataset.state])));
  check(states["/v1/demo_users/u1"] === "stale", "the written record's key is shown invalidated", states);
  check(states["/v1/demo_users?city=Lisbon"] === "stale" && states["/v1/demo_users?city=Osaka"] === "stale", "the lists its old and new city match are invalidated", states);
  check(states["/v1/demo_users?city=Lima"] === "spared" && states["/v1/demo_users/u2"] === "spared", "unrelated keys are shown spared", states);
  const why = await page.locator('#demo-write-out [data-key="/v1/demo_users/u1"]').innerText();
  check(/contains the written record/.test(why), "each invalidation says why", why);
  const token = await page.locator("#demo-token").innerText();
  check(/^demo_users=\d+$/.test(token), "the write shows its token", token);

  await page.click("#demo-fresh");
  await page.locator("#demo-fresh-out [data-fresh]").waitFor();
  check((await page.locator("#demo-fresh-out [data-fresh]").getAttribute("data-fresh")) === "true", "the read with the token shows the written city");
  await page.screenshot({ path: join(shots, "desktop-demo.png"), fullPage: true });

  // Beta sign-ups through the form: valid, invalid (the browser accepts it, the server does
  // not), duplicate (another spelling of the same address).
  const email = `visitor-${Date.now()}@example.com`;
  await page.fill("#beta-email", email);
  await Promise.all([page.waitForNavigation(), page.click("#beta button[type=submit]")]);
  check(/on the list/.test(await page.locator("h1").innerText()), "a valid sign-up is thanked");
  check((await page.locator("[role=status]").innerText()).includes(email), "the thanks name the address");

  await page.goto(`${base}/#beta`);
  await page.fill("#beta-email", "ada@localhost");
  const invalid = await Promise.all([page.waitForNavigation(), page.click("#beta button[type=submit]")]);
  check(invalid[0].status() === 400, "an address without a real domain is refused with 400", invalid[0].status());
  check((await page.locator("[role=alert]").getAttribute("data-code")) === "invalid_email", "the refusal says why", await page.locator("main").innerText());
  check(await page.locator("#beta-email").isVisible(), "the form is offered again after a refusal");

  await page.fill("#beta-email", email.toUpperCase());
  await Promise.all([page.waitForNavigation(), page.click("button[type=submit]")]);
  check(/already on the list/.test(await page.locator("h1").innerText()), "a second sign-up of the same address is merged");

  await page.goto(`${base}/#beta`);
  await page.fill("#beta-email", "not an address");
  await page.click("#beta button[type=submit]");
  check(page.url().endsWith("/#beta"), "the browser itself refuses a malformed address before sending");

  // Docs pages: each loads, names itself in the docs navigation, and links to the others.
  for (const path of ["/docs/", "/docs/api", "/docs/headers", "/docs/consistency", "/docs/admin", "/docs/cli", "/docs/limits"]) {
    const r = await page.goto(`${base}${path}`);
    check(r.status() === 200, `${path} answers 200`, r.status());
    check((await page.locator('nav[aria-label="Documentation"] [aria-current="page"]').count()) === 1, `${path} is marked in the docs navigation`);
  }
  clean(seen, ["400 POST " + `${base}/_edgecache/beta`]);
  await desktop.close();

  // ---- Dark mode: the same contrast rule with the dark palette.
  const dark = await browser.newContext({ viewport: { width: 1280, height: 900 }, colorScheme: "dark" });
  const darkPage = await dark.newPage();
  await darkPage.goto(`${base}/`);
  const bg = await darkPage.evaluate(() => getComputedStyle(document.body).backgroundColor);
  check(bg === "rgb(15, 21, 28)", "dark mode follows the system setting", bg);
  check((await lowContrast(darkPage)).length === 0, "text contrast is at least 4.5:1 (dark)", await lowContrast(darkPage));
  await darkPage.screenshot({ path: join(shots, "desktop-dark.png") });
  await dark.close();

  // ---- Mobile, 360 px wide: nothing overflows sideways.
  const mobile = await browser.newContext({ viewport: { width: 360, height: 740 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
  const phone = await mobile.newPage();
  const phoneSeen = watch(phone, origin);
  await phone.goto(`${base}/`, { waitUntil: "networkidle" });
  const overflow = await phone.evaluate(() => {
    const width = document.documentElement.clientWidth;
    const wide = [...document.querySelectorAll("body *")]
      .filter((e) => !e.closest(".scroll, pre") && e.getBoundingClientRect().right > width + 1)
      .map((e) => e.tagName + (e.id ? `#${e.id}` : "") + (e.className?.baseVal ?? e.className ? `.${e.className?.baseVal ?? e.className}` : ""));
    return { scroll: document.documentElement.scrollWidth, width, wide: wide.slice(0, 10) };
  });
  check(overflow.scroll <= 360 && overflow.wide.length === 0, "no horizontal overflow at 360 px", overflow);
  await phone.screenshot({ path: join(shots, "mobile.png"), fullPage: true });
  await phone.goto(`${base}/docs/api`, { waitUntil: "networkidle" });
  const docsOverflow = await phone.evaluate(() => document.documentElement.scrollWidth);
  check(docsOverflow <= 360, "the docs fit 360 px too", docsOverflow);
  await phone.screenshot({ path: join(shots, "mobile-docs.png"), fullPage: true });
  clean(phoneSeen);
  await mobile.close();

  // ---- Without JavaScript: the page reads, the demo says it needs JavaScript, the form works.
  const nojs = await browser.newContext({ javaScriptEnabled: false, viewport: { width: 1280, height: 900 } });
  const plain = await nojs.newPage();
  await plain.goto(`${base}/`);
  check(await plain.locator("#how").isVisible(), "without JavaScript the page still reads");
  check(!(await plain.locator("#demo-app").isVisible()), "without JavaScript the demo stays hidden");
  check(/needs JavaScript/.test(await plain.locator("#demo").innerText()), "without JavaScript the demo says why it is missing");
  await plain.fill("#beta-email", `nojs-${Date.now()}@example.org`);
  await Promise.all([plain.waitForNavigation(), plain.click("#beta button[type=submit]")]);
  check(/on the list/.test(await plain.locator("h1").innerText()), "without JavaScript the beta form works");
  await nojs.close();
} catch (e) {
  failed = true;
  console.error(`FAIL ${e.message}`);
} finally {
  await browser.close();
}
if (failed) process.exit(1);
console.log(`ok screenshots in ${shots}`);
