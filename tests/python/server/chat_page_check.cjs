// Opens the server's chat page in headless Debian Chromium (playwright-core), types two messages and
// waits for each streamed answer and the tokens/s line. Prints what the page showed as JSON.
// Usage: node chat_page_check.cjs URL USER_DATA_DIR
const { chromium } = require("playwright-core");

async function main() {
  const [url, profile] = process.argv.slice(2);
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run", "--disable-quic",
           "--disable-component-update", "--disable-sync"],
  });
  try {
    const page = await browser.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(url, { timeout: 30000 });
    await page.waitForFunction(() => document.getElementById("model").textContent !== "…", null, { timeout: 15000 });
    const model = await page.textContent("#model");
    await page.fill("#max", "24");
    const turns = [];
    for (const text of ["Hello, who are you?", "And what can you do?"]) {
      await page.fill("#input", text);
      await page.press("#input", "Enter");
      await page.waitForFunction((n) => document.querySelectorAll(".msg.assistant").length === n &&
        document.getElementById("send").textContent === "Send" && /tok\/s/.test(document.getElementById("stats").textContent),
        turns.length + 1, { timeout: 30000 });
      const answer = await page.evaluate(() => { const a = document.querySelectorAll(".msg.assistant"); return a[a.length - 1].innerText; });
      turns.push({ answer, stats: await page.textContent("#stats") });
    }
    const bubbles = await page.evaluate(() => [...document.querySelectorAll(".msg")].map((m) => m.className));
    console.log(JSON.stringify({ model, turns, bubbles, errors }));
  } finally {
    await browser.close();
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
