// The room's board as a projector shows it, for tests/room.rs: opens ROOM_URL/room in
// headless Chromium with the admin token, waits until the counts read EXPECT, prints
// "shown", and — when THEN is given — keeps the page open until they read THEN (the
// board must get there by itself: no reload). Then prints the rendered rows as JSON.
import { chromium } from "playwright-core";

const url = process.env.ROOM_URL;
const token = process.env.ADMIN_TOKEN;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"],
});
try {
  const context = await browser.newContext({ viewport: { width: 1920, height: 1080 }, deviceScaleFactor: 1 });
  await context.addInitScript((t) => sessionStorage.setItem("breakroom-admin-token", t), token);
  const page = await context.newPage();
  await page.goto(`${url}/room`);
  const shows = (counts, timeout) => page.waitForFunction((c) => ["joined", "reproduced", "fixed"]
    .every((k) => document.getElementById(`count-${k}`).textContent === String(c[k])), counts, { timeout });
  await shows(JSON.parse(process.env.EXPECT), 15000);
  console.log("shown");
  if (process.env.THEN) await shows(JSON.parse(process.env.THEN), 60000);
  const rows = await page.$$eval("#attendees tr", (trs) => trs.map((tr) => ({
    name: tr.querySelector(".name").textContent,
    state: tr.querySelector(".st").textContent,
    fix: tr.querySelector(".fix").textContent,
    hints: tr.querySelector(".hints").textContent,
    podium: tr.querySelector(".rank").classList.contains("podium"),
  })));
  const stuck = await page.$$eval("#stuck li", (lis) => lis.map((li) => li.textContent.split(" — ")[0]));
  console.log(JSON.stringify({ rows, stuck, status: await page.textContent("#room-status") }));
} catch (error) {
  console.log(`board: ${error.stack || error}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
