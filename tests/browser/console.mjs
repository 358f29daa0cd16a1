// The console as the audience sees it, for tests/console.rs, in headless Chromium.
// LAB=vote (the default): BASE_URL's vote lab was driven past its referral capacity;
// waits for ReferralCacheExhausted to read firing, filters the traces by the
// exhaustion, opens the first and checks the waterfall's referral span; then the
// projector view (one graph and the alert panel) and a phone. LAB=items: a write's
// trace shows its database and Redis spans; once the test stops Redis (it prints
// "stop redis" and waits for a line on stdin) the Redis-up line falls to 0 and
// ItemsCacheDown fires. LAB=shop: after the catalog's indexes were dropped, a trace
// filtered by db.full_table_scan=true opens on the catalog's query span.
// Prints "ok" or what failed; SCREENSHOT_DIR, when set, gets the vote lab's pictures.
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";

const url = process.env.BASE_URL;
const shots = process.env.SCREENSHOT_DIR;
const lab = process.env.LAB || "vote";
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"],
});
const failures = [];
const check = (ok, what) => { if (!ok) failures.push(what); };

// Filters the trace list, opens the first trace and waits for its span `name`.
async function openTrace(page, filter, name) {
  for (const [field, value] of Object.entries(filter)) await page.fill(`#trace-filter [name="${field}"]`, value);
  await page.click("#trace-filter button");
  // The rows of this filter, not those the page showed before it.
  const shown = Object.entries(filter).map(([k, v]) => `${k}=${encodeURIComponent(v).replace(/%20/g, "+")}`);
  await page.waitForFunction((parts) => {
    const list = document.getElementById("trace-list");
    return parts.every((p) => (list.dataset.query || "").includes(p)) && list.querySelector(".trace-row");
  }, shown, { timeout: 10000 });
  await page.click("#trace-list .trace-row");
  await page.waitForSelector(`#trace-detail [data-span="${name}"]`, { timeout: 10000 });
}

async function vote(page) {
  await page.goto(`${url}/console`);
  await page.waitForSelector('[data-alert="ReferralCacheExhausted"][data-state="firing"]', { timeout: 30000 });
  const summary = await page.textContent('[data-alert="ReferralCacheExhausted"] .alert-summary');
  check(summary.includes("referral cache is exhausted"), `the alert's summary: ${summary}`);
  await page.waitForSelector('[data-graph="referral"] [data-legend="entries"][data-last="11"]', { timeout: 15000 });
  if (shots) await page.screenshot({ path: `${shots}/console.png`, fullPage: false });

  await page.fill('#trace-filter input[name="attr"]', "referral.cache.exhausted=true");
  await page.fill('#trace-filter input[name="status"]', "503");
  await page.click('#trace-filter button');
  await page.waitForFunction(() => document.querySelectorAll("#trace-list .trace-row").length === 1, null, { timeout: 10000 });
  await page.click("#trace-list .trace-row");
  await page.waitForSelector('#trace-detail [data-span="referral.validate"]', { timeout: 10000 });
  const attribute = await page.textContent('#trace-detail [data-span="referral.validate"] [data-key="referral.cache.exhausted"]');
  check(attribute.includes("= true"), `the span's attribute: ${attribute}`);
  check(await page.$("#trace-detail .span.failed") !== null, "the failing span is marked");
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  check(width <= 1280, `the page fits 1280 px (${width})`);
  const bar = await page.$eval('#trace-detail [data-span="referral.validate"] .span-bar', (b) => b.getBoundingClientRect().width);
  check(bar > 0, `the waterfall draws the span's bar (${bar} px)`);
  if (shots) await page.screenshot({ path: `${shots}/console-trace.png`, fullPage: false });

  await page.goto(`${url}/console?view=projector&graph=referral`);
  await page.setViewportSize({ width: 1920, height: 1080 });
  await page.waitForSelector('[data-alert="ReferralCacheExhausted"][data-state="firing"]', { timeout: 10000 });
  await page.waitForSelector('[data-graph="referral"] svg polyline', { state: "attached", timeout: 10000 });
  check(await page.isHidden("#traces"), "the projector view hides the traces");
  check((await page.$$(".graph")).length === 1, "the projector view shows one graph");
  const size = await page.evaluate(() => parseFloat(getComputedStyle(document.body).fontSize));
  check(size >= 28, `big type on a 1920 px projector (${size} px)`);
  if (shots) await page.screenshot({ path: `${shots}/console-projector.png`, fullPage: false });

  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(`${url}/console`);
  await page.waitForSelector('[data-alert="ReferralCacheExhausted"]', { timeout: 10000 });
  const phone = await page.evaluate(() => document.documentElement.scrollWidth);
  check(phone <= 390, `the page fits a 390 px phone (${phone})`);
}

async function items(page) {
  await page.goto(`${url}/console`);
  await openTrace(page, { route: "/items", status: "200" }, "postgres_insert");
  check(await page.$('#trace-detail [data-span="redis_set"]') !== null, "the write's trace has its Redis span");
  const system = await page.textContent('#trace-detail [data-span="postgres_insert"] [data-key="db.system"]');
  check(/= (sqlite|postgresql)$/.test(system.trim()), `the insert's db.system: ${system}`);
  console.log("stop redis");
  const input = createInterface({ input: process.stdin });
  await new Promise((resolve) => input.once("line", resolve));
  input.close();
  await page.waitForSelector('[data-alert="ItemsCacheDown"][data-state="firing"]', { timeout: 45000 });
  await page.waitForSelector('[data-graph="cache"] [data-legend="Redis up (1 = yes)"][data-last="0"]', { timeout: 15000 });
}

async function shop(page) {
  await page.goto(`${url}/console`);
  await openTrace(page, { attr: "db.full_table_scan=true" }, "catalog_by_category");
  const scan = await page.textContent('#trace-detail [data-span="catalog_by_category"] [data-key="db.full_table_scan"]');
  check(scan.includes("= true"), `the query span's db.full_table_scan: ${scan}`);
  const missing = await page.textContent('#trace-detail [data-span="catalog_by_category"] [data-key="db.missing_index"]');
  check(missing.includes("idx_products_category"), `the query span's db.missing_index: ${missing}`);
  await page.waitForSelector('[data-alert="ShopIndexMissing"]:not([data-state="inactive"])', { timeout: 15000 });
}

try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, deviceScaleFactor: 1 });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  await { vote, items, shop }[lab](page);
  check(errors.length === 0, `no script errors: ${errors.join("; ")}`);
  console.log(failures.length ? `failed: ${failures.join(" | ")}` : "ok");
  if (failures.length) process.exitCode = 1;
} catch (error) {
  console.log(`console: ${error.stack || error}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
