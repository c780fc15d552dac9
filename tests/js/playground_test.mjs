// The playground at / in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core), against a running server (started by server_process_test's
// E2E.PlaygroundInChromium...):
//   node tests/js/playground_test.mjs HTTP_ADDRESS SCREENSHOT.png
// 1. a typed prompt generates a video through the WebSocket and MSE; a prompt switch is
//    acknowledged on screen; currentTime advances to the end; no MediaError;
// 2. a plain <video src="/v1/generate?..."> plays to the end;
// 3. an invalid request shows the server's message.
// Saves a screenshot of the playground after the first video. Exits 0 when every check
// passed, 1 with the reason otherwise.
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const [http, screenshot] = process.argv.slice(2);
if (!http || !screenshot) {
  console.error("usage: playground_test.mjs HTTP_ADDRESS SCREENSHOT.png");
  process.exit(2);
}
const base = `http://${http}`;

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
         "--no-first-run", "--disable-component-update", "--disable-sync",
         "--autoplay-policy=no-user-gesture-required"],
});
let failed = false;
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 720 } });
  const consoleErrors = [];
  page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
  page.on("pageerror", (e) => consoleErrors.push(String(e)));

  // 1. The playground: type a prompt, start, switch once the first block plays.
  await page.goto(base + "/");
  await page.fill("#prompt", "a lighthouse on a cliff at sunset");
  await page.fill("#width", "64");
  await page.fill("#height", "64");
  await page.selectOption("#length", "201");
  await page.selectOption("#pacing", "PACING_REALTIME");
  await page.click("#start");
  await page.waitForFunction(() => document.getElementById("block").textContent === "0",
                             null, { timeout: 120000 });
  await page.fill("#next", "the lighthouse in a storm at night");
  await page.click("#switch");
  await page.waitForFunction(
    () => /command 2 acknowledged: effective block \d+/.test(document.getElementById("log").textContent),
    null, { timeout: 60000 });
  await page.waitForFunction(() => document.getElementById("state").textContent === "done",
                             null, { timeout: 180000 });
  // Playback reaches the end of the MSE stream.
  await page.waitForFunction(() => {
    const v = document.getElementById("video");
    return v.ended || (v.duration > 0 && v.currentTime >= v.duration - 0.1);
  }, null, { timeout: 60000 });
  const played = await page.evaluate(() => {
    const v = document.getElementById("video");
    return { currentTime: v.currentTime, duration: v.duration, error: v.error && v.error.message,
             ttfc: document.getElementById("ttfc").textContent,
             log: document.getElementById("log").textContent,
             errorText: document.getElementById("error").textContent };
  });
  assert.equal(played.error, null, `MediaError: ${played.error}`);
  assert.equal(played.errorText, "");
  assert.ok(played.duration > 0, `duration ${played.duration}`);
  assert.match(played.ttfc, /^[0-9.]+ s$/);
  await page.screenshot({ path: screenshot });
  console.log(`playground: played ${played.currentTime.toFixed(2)} / ${played.duration.toFixed(2)} s, ` +
              `TTFC ${played.ttfc}`);

  // 2. A plain <video src> on the progressive HTTP response.
  const plain = await page.evaluate(async () => {
    const v = document.createElement("video");
    v.muted = true;
    document.body.appendChild(v);
    v.src = "/v1/generate?prompt=a+plain+video&width=64&height=64&num_frames=41&pacing=fast";
    await v.play().catch(() => {});
    const t0 = performance.now();
    while (!v.ended && !v.error && performance.now() - t0 < 120000) {
      await new Promise((r) => setTimeout(r, 100));
    }
    return { ended: v.ended, error: v.error && v.error.message, duration: v.duration };
  });
  assert.equal(plain.error, null, `plain <video src> MediaError: ${plain.error}`);
  assert.ok(plain.ended, `plain <video src> did not end: ${JSON.stringify(plain)}`);
  console.log(`plain <video src>: ended at ${plain.duration.toFixed(2)} s`);

  // 3. An invalid request shows the server's message.
  await page.fill("#width", "7");
  await page.click("#start");
  await page.waitForFunction(() => document.getElementById("error").textContent !== "",
                             null, { timeout: 30000 });
  const message = await page.textContent("#error");
  assert.match(message, /INVALID_ARGUMENT: start\.width/);
  console.log(`invalid request: ${message}`);
  assert.deepEqual(consoleErrors, [], `console errors: ${consoleErrors.join("; ")}`);
  console.log("ok");
} catch (e) {
  failed = true;
  console.error(e.stack || String(e));
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
