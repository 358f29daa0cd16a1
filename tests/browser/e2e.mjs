// End-to-end tests of the vote lab's pages in Debian's headless Chromium, driven by
// playwright-core. Run by tests/browser.rs against a fresh `breakroom serve vote`:
//   BASE_URL=http://127.0.0.1:PORT ADMIN_TOKEN=… [SCREENSHOT_DIR=…] node e2e.mjs
import { chromium } from "playwright-core";
import { execFileSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const BASE = process.env.BASE_URL;
const TOKEN = process.env.ADMIN_TOKEN;
const SHOTS = process.env.SCREENSHOT_DIR || mkdtempSync(join(tmpdir(), "breakroom-shots-"));
const PHONE = { width: 390, height: 844 };
const PROJECTOR = { width: 1920, height: 1080 };
const origin = new URL(BASE).origin;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"],
});
const foreign = [];
let passed = 0;
let failed = 0;

async function page(viewport) {
  const context = await browser.newContext({ viewport, deviceScaleFactor: 1 });
  context.on("request", (request) => {
    const url = request.url();
    if (!url.startsWith(origin) && !url.startsWith("data:") && !url.startsWith("blob:")) foreign.push(url);
  });
  return { context, page: await context.newPage() };
}

async function api(method, path, body, token) {
  const headers = { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  const response = await fetch(`${BASE}${path}`, { method, headers, body: body ? JSON.stringify(body) : undefined });
  return { status: response.status, body: await response.json().catch(() => ({})) };
}

const reset = () => api("POST", "/admin/reset?confirm=yes", null, TOKEN);

async function story(name, body) {
  try {
    await body();
    passed += 1;
    console.log(`ok   ${name}`);
  } catch (error) {
    failed += 1;
    console.log(`FAIL ${name}: ${error.stack || error}`);
  }
}

function expect(condition, message) {
  if (!condition) throw new Error(message);
}

await story("a phone votes and sees VOTE RECORDED!", async () => {
  await reset();
  const { context, page: p } = await page(PHONE);
  await p.goto(`${BASE}/`);
  await p.screenshot({ path: join(SHOTS, "vote-phone.png") });
  await p.click('[data-choice="stare"]');
  await p.waitForSelector("#recorded:not([hidden])", { timeout: 5000 });
  expect((await p.textContent("#recorded")).includes("VOTE RECORDED!"), "confirmation shown");
  const counts = await api("GET", "/votes");
  expect(counts.body.stare.count === 1, `the vote was counted: ${JSON.stringify(counts.body)}`);
  await context.close();
});

await story("the 11th referral vote from the page shows SERVICE DEGRADED", async () => {
  await reset();
  const { context, page: p } = await page(PHONE);
  await p.goto(`${BASE}/?referral=conf-partner-2026`);
  for (let i = 1; i <= 11; i += 1) {
    await p.click('[data-choice="ai"]');
    const outcome = await p.waitForSelector("#recorded:not([hidden]), #degraded:not([hidden])", { timeout: 5000 });
    const id = await outcome.getAttribute("id");
    if (i <= 10) {
      expect(id === "recorded", `vote ${i} was recorded (got ${id})`);
      await p.click("#recorded [data-again]");
    } else {
      expect(id === "degraded", `vote 11 shows the degraded message (got ${id})`);
      const text = await p.textContent("#degraded");
      expect(text.includes("SERVICE DEGRADED") && text.includes("referral cache exhausted"), text);
      await p.screenshot({ path: join(SHOTS, "vote-degraded-phone.png") });
    }
  }
  await context.close();
});

await story("an open results page moves its bars when another client votes", async () => {
  await reset();
  const { context, page: p } = await page(PROJECTOR);
  await p.goto(`${BASE}/results`);
  await p.waitForFunction(() => document.querySelector("#live-dot").classList.contains("on"), null, { timeout: 5000 });
  for (const choice of ["ai", "ai", "ai", "print", "restart"]) await api("POST", "/vote", { choice, referral: null });
  await p.waitForFunction(() => document.querySelector('[data-choice="ai"] .bar-count').textContent === "3", null, { timeout: 5000 });
  expect((await p.textContent("#total")) === "5", "the total follows");
  await p.waitForTimeout(600); // let the bars' transition finish for the screenshot
  await p.screenshot({ path: join(SHOTS, "results-projector.png") });
  await p.setViewportSize(PHONE);
  await p.screenshot({ path: join(SHOTS, "results-phone.png") });
  await context.close();
});

await story("the admin page refuses a wrong token and resets with the right one", async () => {
  await api("POST", "/vote", { choice: "revert", referral: null });
  const { context, page: p } = await page(PHONE);
  await p.goto(`${BASE}/admin`);
  p.on("dialog", (dialog) => dialog.accept());
  await p.fill("#token", "not-the-token");
  await p.click("#token-form button");
  await p.click("#reset");
  await p.waitForFunction(() => document.querySelector("#admin-status").textContent.includes("Wrong admin token"), null, { timeout: 5000 });
  let counts = await api("GET", "/votes");
  expect(counts.body.revert.count >= 1, "nothing was reset with a wrong token");
  await p.fill("#token", TOKEN);
  await p.click("#token-form button");
  await p.click("#reset");
  await p.waitForFunction(() => document.querySelector("#admin-status").textContent.includes("Session reset complete"), null, { timeout: 5000 });
  counts = await api("GET", "/votes");
  expect(Object.values(counts.body).every((c) => c.count === 0), `all votes cleared: ${JSON.stringify(counts.body)}`);
  await p.evaluate(() => window.scrollTo(0, 0));
  await p.screenshot({ path: join(SHOTS, "admin-phone.png") });
  await p.setViewportSize(PROJECTOR);
  await p.screenshot({ path: join(SHOTS, "admin-projector.png") });
  await context.close();
});

await story("the presenter page shows two QR codes that decode to the audience links", async () => {
  const { context, page: p } = await page(PROJECTOR);
  await p.goto(`${BASE}/presenter`);
  await p.fill("#token", TOKEN);
  await p.click("#token-form button");
  await p.waitForSelector("#state:not([hidden])", { timeout: 5000 });
  expect((await p.textContent("#state-mode")) === "BUGGY", "the state shows the buggy implementation");
  await p.evaluate(() => window.scrollTo(0, 0));
  await p.waitForTimeout(600);
  await p.screenshot({ path: join(SHOTS, "presenter-projector.png") });
  const decoded = [];
  const codes = await p.$$("img.qr");
  expect(codes.length === 2, `two QR codes (${codes.length})`);
  for (const [i, code] of codes.entries()) {
    const file = join(SHOTS, `qr-${i}.png`);
    await code.screenshot({ path: file });
    decoded.push(execFileSync("zbarimg", ["--raw", "-q", file]).toString().trim());
  }
  const expected = [`${origin}/`, `${origin}/?referral=conf-partner-2026`];
  expect(JSON.stringify(decoded) === JSON.stringify(expected), `decoded ${JSON.stringify(decoded)}, expected ${JSON.stringify(expected)}`);
  await p.setViewportSize(PHONE);
  await p.evaluate(() => window.scrollTo(0, 0));
  await p.screenshot({ path: join(SHOTS, "presenter-phone.png") });
  await context.close();
});

await story("?conf=kubecon shows the KubeCon banner and logo", async () => {
  const { context, page: p } = await page(PROJECTOR);
  await p.goto(`${BASE}/?conf=kubecon`);
  expect((await p.textContent(".greeting")) === "Hello KubeCon!", "the greeting");
  const logo = await p.$eval(".brand-logo", (img) => ({ src: img.getAttribute("src"), loaded: img.complete && img.naturalWidth > 0 }));
  expect(logo.src === "/static/logos/kubecon.svg" && logo.loaded, JSON.stringify(logo));
  const fonts = await p.evaluate(async () => { await document.fonts.ready; return [...document.fonts].filter((f) => f.status === "loaded").map((f) => f.family); });
  expect(fonts.some((f) => f.includes("Bebas")), `the embedded display font loaded: ${fonts}`);
  await p.screenshot({ path: join(SHOTS, "vote-projector-kubecon.png") });
  await context.close();
});

await story("no page requests anything from another host", async () => {
  expect(foreign.length === 0, `requests left the server: ${foreign.join(", ")}`);
});

await browser.close();
console.log(`screenshots: ${SHOTS}`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
