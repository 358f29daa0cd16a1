// End-to-end tests of the vote lab's pages in Debian's headless Chromium, driven by
// playwright-core. Run by tests/browser.rs against a fresh `breakroom serve vote`:
//   BASE_URL=http://127.0.0.1:PORT ADMIN_TOKEN=… [SCREENSHOT_DIR=…] node e2e.mjs
import { chromium } from "playwright-core";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const BASE = process.env.BASE_URL;
const TOKEN = process.env.ADMIN_TOKEN;
const SHOTS = process.env.SCREENSHOT_DIR || mkdtempSync(join(tmpdir(), "breakroom-shots-"));
// Images made only to be decoded, never kept with the screenshots.
const WORK = mkdtempSync(join(tmpdir(), "breakroom-decode-"));
const PHONE = { width: 390, height: 844 };
const PROJECTOR = { width: 1920, height: 1080 };
const origin = new URL(BASE).origin;
// The servers under test: the vote lab, the items lab for its landing page, a datasets
// lab with a workshop room.
const ROOM = process.env.ROOM_URL;
const OWN = [origin, ...[process.env.ITEMS_URL, ROOM].filter(Boolean).map((u) => new URL(u).origin)];

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"],
});
const foreign = [];
let passed = 0;
let failed = 0;

async function page(viewport, options = {}) {
  const context = await browser.newContext({ viewport, deviceScaleFactor: 1, ...options });
  context.on("request", (request) => {
    const url = request.url();
    if (!OWN.some((o) => url.startsWith(o)) && !url.startsWith("data:") && !url.startsWith("blob:")) foreign.push(url);
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
  for (let i = 0; i < 10; i += 1) {
    await p.keyboard.press("Tab");
    if (await p.evaluate(() => document.activeElement.classList.contains("choice"))) break;
  }
  const ring = await p.evaluate(() => { const s = getComputedStyle(document.activeElement); return { cls: document.activeElement.className, style: s.outlineStyle, width: parseFloat(s.outlineWidth) }; });
  expect(ring.cls === "choice" && ring.style === "solid" && ring.width >= 3, `keyboard focus shows a ring: ${JSON.stringify(ring)}`);
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
      expect(text.includes("SERVICE DEGRADED") && text.includes("partner link is not working"), text);
      expect(!text.includes("cache") && !text.includes("evict"), `the root cause stays for the speaker to find: ${text}`);
      const focused = await p.evaluate(() => document.activeElement.textContent);
      expect(focused === "SERVICE DEGRADED", `the outcome takes the focus (${focused})`);
      await p.screenshot({ path: join(SHOTS, "vote-degraded-phone.png") });
      await p.click("#without-partner");
      await p.waitForSelector("#recorded:not([hidden])", { timeout: 5000 });
      expect(!p.url().includes("referral"), `the page votes without the code from now on: ${p.url()}`);
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
  // The five votes may reach the page in more than one update: wait for the last.
  await p.waitForFunction(() => document.querySelector("#total").textContent === "5", null, { timeout: 5000 })
    .catch(async () => { throw new Error(`the total follows (shows ${await p.textContent("#total")})`); });
  expect((await p.textContent('[data-choice="ai"] .bar-count')) === "3", "the ai bar follows");
  await p.waitForTimeout(600); // let the bars' transition finish for the screenshot
  await p.screenshot({ path: join(SHOTS, "results-projector.png") });
  await p.setViewportSize(PHONE);
  await p.screenshot({ path: join(SHOTS, "results-phone.png") });
  await context.close();
});

await story("/results shows each choice's share, and a join code that decodes to the vote page", async () => {
  await reset();
  for (const choice of ["ai", "ai", "ai", "print"]) await api("POST", "/vote", { choice, referral: null });
  const { context, page: p } = await page(PROJECTOR);
  await p.goto(`${BASE}/results`);
  await p.waitForFunction(() => document.querySelector("#live-dot").classList.contains("on"), null, { timeout: 5000 });
  await p.waitForTimeout(600); // the bars' transition
  const ai = await p.$eval('[data-choice="ai"]', (row) => ({
    share: row.querySelector(".bar-share").textContent,
    width: row.querySelector(".bar-fill").getBoundingClientRect().width / row.querySelector(".bar-track").getBoundingClientRect().width,
  }));
  expect(ai.share === "75%" && Math.abs(ai.width - 0.75) < 0.02, `3 of 4 votes: ${JSON.stringify(ai)}`);
  const wide = await p.evaluate(() => document.documentElement.scrollWidth);
  expect(wide <= PROJECTOR.width + 1, `nothing overflows sideways (${wide})`);
  const file = join(WORK, "results-join-qr.png");
  await (await p.$("img.join-qr")).screenshot({ path: file });
  const decoded = execFileSync("zbarimg", ["--raw", "-q", file]).toString().trim();
  expect(decoded === `${origin}/`, `the join code: ${decoded}`);
  await context.close();
});

await story("the admin page refuses a wrong token, shows the lab's state and resets with the right one", async () => {
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
  await p.waitForSelector("#state:not([hidden])", { timeout: 5000 });
  expect((await p.textContent("#state-mode")) === "BUGGY", "the speaker sees the implementation");
  expect((await p.textContent("#state-cache")).includes("/ 10"), "and the referral cache's fill");
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

const PROJECTORS = [{ width: 1280, height: 720 }, { width: 1920, height: 1080 }, { width: 3840, height: 2160 }];
const AUDIENCE_LINKS = [`${origin}/`, `${origin}/?referral=conf-partner-2026`];

// Everything the projector shows lies inside the screen, nothing scrolls, no text is cut.
async function layoutProblems(p) {
  return p.evaluate(() => {
    const problems = [];
    const { innerWidth: w, innerHeight: h } = window;
    const root = document.documentElement;
    if (root.scrollHeight > h + 1 || root.scrollWidth > w + 1) problems.push(`the page scrolls: ${root.scrollWidth}x${root.scrollHeight} in ${w}x${h}`);
    for (const el of document.querySelectorAll("header *, main *")) {
      const box = el.getBoundingClientRect();
      if (box.width === 0 && box.height === 0) continue; // not shown in this focus
      if (box.left < -1 || box.top < -1 || box.right > w + 1 || box.bottom > h + 1) {
        problems.push(`${el.tagName.toLowerCase()}.${el.className} at ${Math.round(box.left)},${Math.round(box.top)}–${Math.round(box.right)},${Math.round(box.bottom)}`);
      }
    }
    for (const el of document.querySelectorAll(".qr-url, .strip-item, .bar-label, .question, .qr-title")) {
      if (el.getClientRects().length && el.scrollWidth > el.clientWidth + 1) problems.push(`${el.className} is cut off: "${el.textContent.trim()}"`);
    }
    return problems;
  });
}

async function openProjector(viewport, focus) {
  const opened = await page(viewport);
  await opened.page.goto(`${BASE}/presenter${focus === "both" ? "" : `?focus=${focus}`}`);
  await opened.page.waitForFunction(() => [...document.images].every((i) => i.complete && i.naturalWidth > 0));
  await opened.page.evaluate(() => document.fonts.ready);
  return opened;
}

// What a phone at the back sees: the screen at a fifth of its size, then zbarimg.
async function decodedAtAFifth(p, name) {
  const shot = await p.screenshot();
  const { width, height } = p.viewportSize();
  const { context, page: small } = await page({ width: Math.round(width / 5), height: Math.round(height / 5) });
  await small.setContent(`<body style="margin:0"><img id="shot" style="display:block;width:${Math.round(width / 5)}px" src="data:image/png;base64,${shot.toString("base64")}"></body>`);
  await small.waitForFunction(() => document.getElementById("shot").complete);
  const file = join(WORK, `${name}-at-20-percent.png`);
  await small.screenshot({ path: file });
  await context.close();
  let out = "";
  try { out = execFileSync("zbarimg", ["--raw", "-q", file]).toString(); } catch (error) { out = String(error.stdout || ""); }
  return out.split("\n").map((l) => l.trim()).filter(Boolean).sort();
}

await story("the projector fits 1280x720, 1920x1080 and 4K in every focus, with no controls on it", async () => {
  await reset();
  for (const viewport of PROJECTORS) {
    for (const focus of ["both", "qr", "results"]) {
      const { context, page: p } = await openProjector(viewport, focus);
      const where = `${viewport.width}x${viewport.height}, focus ${focus}`;
      const problems = await layoutProblems(p);
      expect(problems.length === 0, `${where}: ${problems.join("; ")}`);
      const codes = await p.$$eval("img.qr", (imgs) => imgs.map((i) => i.getBoundingClientRect().height));
      const shown = codes.filter((h) => h > 0);
      if (focus === "results") {
        expect(shown.length === 0, `${where}: no codes (${codes})`);
      } else {
        expect(shown.length === 2, `${where}: two codes (${codes})`);
        expect(shown.every((h) => h >= 0.4 * viewport.height), `${where}: each code at least 40% of the height (${codes})`);
      }
      const controls = await p.$$eval("input, button, form, select, textarea", (all) => all.length);
      expect(controls === 0, `${where}: ${controls} controls shown to the room`);
      expect((await p.textContent("#strip-mode")).trim() === "BUGGY", `${where}: the strip names the implementation`);
      if (focus === "both" && viewport.width < 3840) await p.screenshot({ path: join(SHOTS, `presenter-${viewport.width}x${viewport.height}.png`) });
      if (focus === "qr" && viewport.width === 1920) await p.screenshot({ path: join(SHOTS, "presenter-codes-1920x1080.png") });
      await context.close();
    }
  }
  const { context, page: p } = await openProjector(PHONE, "both");
  const wide = await p.evaluate(() => document.documentElement.scrollWidth);
  expect(wide <= PHONE.width + 1, `the presenter page fits a phone's width (${wide})`);
  await p.screenshot({ path: join(SHOTS, "presenter-phone.png") });
  await context.close();
});

await story("both QR codes decode from a screenshot at a fifth of its size", async () => {
  for (const focus of ["both", "qr"]) {
    const { context, page: p } = await openProjector(PROJECTOR, focus);
    const decoded = await decodedAtAFifth(p, `presenter-${focus}`);
    expect(JSON.stringify(decoded) === JSON.stringify([...AUDIENCE_LINKS].sort()), `focus ${focus}: decoded ${JSON.stringify(decoded)}, expected ${JSON.stringify(AUDIENCE_LINKS)}`);
    await context.close();
  }
});

await story("the status strip follows the fix, and Q, R and B switch the projector's focus", async () => {
  await reset();
  const { context, page: p } = await openProjector({ width: 1280, height: 720 }, "both");
  expect((await p.textContent("#strip-mode")).trim() === "BUGGY", "buggy at first");
  const flipped = await api("POST", "/admin/bugs/referral", { fixed: true }, TOKEN);
  expect(flipped.status === 200, `the fix runs: ${JSON.stringify(flipped)}`);
  await p.waitForFunction(() => document.getElementById("strip-mode").textContent.trim() === "FIXED", null, { timeout: 6000 });
  for (const [key, focus] of [["q", "qr"], ["r", "results"], ["b", "both"]]) {
    await p.keyboard.press(key);
    const state = await p.evaluate(() => ({ focus: document.getElementById("projector").dataset.focus, search: window.location.search }));
    expect(state.focus === focus, `${key} shows ${focus}: ${JSON.stringify(state)}`);
    expect(focus === "both" ? state.search === "" : state.search === `?focus=${focus}`, `the address keeps the focus: ${state.search}`);
  }
  await reset();
  await p.waitForFunction(() => document.getElementById("strip-mode").textContent.trim() === "BUGGY", null, { timeout: 6000 });
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
  // A branded projector's codes and join link carry the brand on to the phones.
  const { context: projector, page: q } = await openProjector(PROJECTOR, "qr");
  await q.goto(`${BASE}/presenter?conf=kubecon`);
  await q.waitForFunction(() => [...document.images].every((i) => i.complete && i.naturalWidth > 0));
  const decoded = [];
  for (const [i, code] of (await q.$$("img.qr")).entries()) {
    const file = join(WORK, `kubecon-qr-${i}.png`);
    await code.screenshot({ path: file });
    decoded.push(execFileSync("zbarimg", ["--raw", "-q", file]).toString().trim());
  }
  const branded = [`${origin}/?conf=kubecon`, `${origin}/?referral=conf-partner-2026&conf=kubecon`];
  expect(JSON.stringify(decoded) === JSON.stringify(branded), `decoded ${JSON.stringify(decoded)}`);
  await q.goto(`${BASE}/results?conf=kubecon`);
  expect((await q.getAttribute(".join-card a", "href")) === `${origin}/?conf=kubecon`, "the join link too");
  await projector.close();
});

await story("without JavaScript a tap votes and the results show it, counts included", async () => {
  await reset();
  const { context, page: p } = await page(PHONE, { javaScriptEnabled: false });
  await p.goto(`${BASE}/?conf=kubecon`);
  await Promise.all([p.waitForURL(/\/results\?voted=ai/), p.click('button[value="ai"]')]);
  expect(p.url().endsWith("/results?voted=ai&conf=kubecon"), `landed on ${p.url()}`);
  expect((await p.textContent(".voted")).includes("Your vote is in: Ask an AI to explain it."), "the vote is acknowledged");
  const ai = await p.textContent('[data-choice="ai"] .bar-count');
  expect(ai.trim() === "1", `the count is in the HTML: ${ai}`);
  await p.screenshot({ path: join(SHOTS, "vote-phone-no-javascript.png") });
  await context.close();
});

// Every value `--conference` and `?conf=` document, on the smallest phone and a common one:
// the logo is drawn with paths (no font it could fall back from), fits, and has no clipped word.
const BRANDS = [["sreday", "SREday"], ["kubecon", "KubeCon"], ["devopsdays", "DevOpsDays"]];
await story("every conference's banner fits a phone, its logo drawn without fonts", async () => {
  for (const viewport of [{ width: 320, height: 568 }, PHONE]) {
    const { context, page: p } = await page(viewport);
    for (const [key, greeting] of BRANDS) {
      await p.goto(`${BASE}/?conf=${key}`);
      expect((await p.textContent(".greeting")) === `Hello ${greeting}!`, `${key}: the greeting`);
      const logo = await p.$eval(".brand-logo", (img) => {
        const box = img.getBoundingClientRect();
        return { src: img.getAttribute("src"), loaded: img.complete && img.naturalWidth > 0,
                 left: box.left, right: box.right, width: innerWidth, scroll: document.documentElement.scrollWidth };
      });
      expect(logo.src === `/static/logos/${key}.svg` && logo.loaded, `${key}: ${JSON.stringify(logo)}`);
      expect(logo.left >= 0 && logo.right <= logo.width && logo.scroll <= logo.width, `${key} fits ${viewport.width} px: ${JSON.stringify(logo)}`);
      const svg = await (await fetch(`${BASE}${logo.src}`)).text();
      expect(svg.includes("<path") && !svg.includes("<text") && !svg.includes("font-family"), `${key}: the words are paths`);
      if (viewport.width === 320 && key === "devopsdays") await p.screenshot({ path: join(SHOTS, "vote-phone-320-devopsdays.png") });
    }
    await context.close();
  }
});

// Every page at the four sizes of a room: phones, a venue projector, a 1080p one. Nothing
// sticks out sideways, and axe-core finds nothing serious (evaluated through the browser's
// debugging protocol, which the pages' script policy does not govern: it stays in force).
const AXE = readFileSync(join(dirname(fileURLToPath(import.meta.url)), "node_modules/axe-core/axe.min.js"), "utf8");
const SIZES = [{ width: 390, height: 844 }, { width: 320, height: 568 }, { width: 1280, height: 720 }, PROJECTOR];
const PAGES = [`${BASE}/`, `${BASE}/?referral=conf-partner-2026`, `${BASE}/results`, `${BASE}/admin`, `${BASE}/presenter`,
  `${BASE}/console`, `${BASE}/console?view=projector`,
  ...(process.env.ITEMS_URL ? [`${process.env.ITEMS_URL}/`] : []), ...(ROOM ? [`${ROOM}/room`, `${ROOM}/room/join?code=ABCDEF`] : [])];
await story("every page fits every size and axe-core finds no serious violation", async () => {
  const problems = [];
  for (const viewport of SIZES) {
    const { context, page: p } = await page(viewport);
    for (const url of PAGES) {
      await p.goto(url);
      await p.evaluate(() => document.fonts.ready);
      // The console draws what it fetched: its alert panel and graphs.
      if (url.includes("/console")) await p.waitForSelector("#alert-list article", { timeout: 10000 });
      const wide = await p.evaluate(() => {
        const out = [];
        for (const el of document.querySelectorAll("body *")) {
          const box = el.getBoundingClientRect();
          const style = getComputedStyle(el);
          if (box.width === 0 || style.visibility === "hidden" || el.closest("[hidden]")) continue;
          if (box.left < -1 || box.right > innerWidth + 1) out.push(`${el.tagName.toLowerCase()}.${el.className}: ${Math.round(box.left)}..${Math.round(box.right)}`);
        }
        return { out: out.slice(0, 5), scroll: document.documentElement.scrollWidth, width: innerWidth };
      });
      if (wide.out.length || wide.scroll > wide.width) problems.push(`${url} at ${viewport.width}×${viewport.height}: ${JSON.stringify(wide)}`);
      await p.evaluate(AXE);
      const serious = await p.evaluate(async () => {
        const { violations } = await axe.run(document, { resultTypes: ["violations"] });
        return violations.filter((v) => v.impact === "serious" || v.impact === "critical")
          .map((v) => `${v.id} (${v.impact}): ${v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join(", ")}`);
      });
      if (serious.length) problems.push(`${url} at ${viewport.width}×${viewport.height}: ${serious.join("; ")}`);
    }
    await context.close();
  }
  expect(problems.length === 0, problems.join("\n"));
});

// The workshop room's board on the projector: the board's JSON, drawn as text, live.
async function roomApi(method, path, body) {
  const headers = { "content-type": "application/json", authorization: `Bearer ${TOKEN}` };
  const response = await fetch(`${ROOM}${path}`, { method, headers, body: body ? JSON.stringify(body) : undefined });
  return { status: response.status, body: await response.json().catch(() => ({})) };
}
await story("the room's board shows who joined, reproduced and fixed, live, names as text", async () => {
  const { body: card } = await roomApi("GET", "/room/card");
  const names = ['Zoë "the fixer" & co', "Ann", "Bob", "Cy", "Di", "x".repeat(40)];
  const ids = {};
  for (const name of names) {
    const joined = await roomApi("POST", "/room/join", { code: card.code, name });
    expect(joined.status === 201, `join ${name}: ${joined.status} ${JSON.stringify(joined.body)}`);
    ids[name] = joined.body;
  }
  const report = async (name, kind, outcome, detail) => {
    const r = await roomApi("POST", "/room/report", { code: card.code, attendee: ids[name].attendee, secret: ids[name].secret,
      scenario: "datasets/stats-cache", kind, outcome, detail });
    expect(r.status === 200, `report ${name}: ${r.status} ${JSON.stringify(r.body)}`);
  };
  await report("Ann", "demonstrate", "reproduced", "the dashboard shows 15 downloads, the database has 35");
  await report(names[0], "check", "pass", "one more download showed at once");
  await report("Bob", "check", "fail", "the cache is still stale");
  await report("Cy", "check", "pass", "one more download showed at once");
  const { context, page: p } = await page(PROJECTOR);
  await context.addInitScript((token) => sessionStorage.setItem("breakroom-admin-token", token), TOKEN);
  await p.goto(`${ROOM}/room`);
  const shows = async (counts) => p.waitForFunction((c) => ["joined", "reproduced", "fixed"]
    .every((k) => document.getElementById(`count-${k}`).textContent === String(c[k])), counts, { timeout: 10000 });
  let { body: board } = await roomApi("GET", "/room/state");
  await shows(board.counts);
  const rows = await p.$$eval("#attendees tr", (trs) => trs.map((tr) => ({
    name: tr.querySelector(".name").textContent, state: tr.querySelector(".st").textContent, cls: tr.className })));
  expect(JSON.stringify(rows.map((r) => [r.name, r.state])) === JSON.stringify(board.attendees.map((a) => [a.name, a.state])),
    `rows ${JSON.stringify(rows)} vs ${JSON.stringify(board.attendees)}`);
  expect(rows.filter((r) => /rank-\d/.test(r.cls)).length === 2, `the two who fixed are highlighted: ${JSON.stringify(rows)}`);
  expect(await p.$$eval("#attendees b, #attendees script", (e) => e.length) === 0, "names are text");
  expect((await p.textContent("#join-command")).trim() === card.command, "the join command for latecomers");
  const stuck = await p.$$eval("#stuck li", (lis) => lis.map((li) => li.textContent.split(" — ")[0]));
  expect(JSON.stringify(stuck) === JSON.stringify(board.stuck), `stuck ${JSON.stringify(stuck)} vs ${JSON.stringify(board.stuck)}`);
  // A report while the page is open reaches it without a reload.
  await report("Di", "check", "pass", "one more download showed at once");
  ({ body: board } = await roomApi("GET", "/room/state"));
  expect(board.counts.fixed === 3, JSON.stringify(board.counts));
  await shows(board.counts);
  expect(await p.$$eval("#attendees tr.rank-3", (e) => e.length) === 1, "the third to fix is highlighted");
  await p.waitForFunction(() => document.getElementById("join-qr").complete);
  const shot = join(WORK, "room-board.png");
  await p.screenshot({ path: shot, fullPage: true });
  let decoded = "";
  try { decoded = execFileSync("zbarimg", ["--raw", "-q", shot]).toString().trim(); } catch (error) { decoded = String(error.stdout || ""); }
  expect(decoded === card.join_page, `the QR code decodes to ${card.join_page}: ${decoded}`);
  await p.screenshot({ path: join(SHOTS, "room-board-1920x1080.png") });
  for (const viewport of SIZES) {
    await p.setViewportSize(viewport);
    const wide = await p.evaluate(() => document.documentElement.scrollWidth);
    expect(wide <= viewport.width + 1, `the board fits ${viewport.width} wide (${wide})`);
  }
  await context.close();
});

await story("no page requests anything from another host", async () => {
  expect(foreign.length === 0, `requests left the server: ${foreign.join(", ")}`);
});

await browser.close();
console.log(`screenshots: ${SHOTS}`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
