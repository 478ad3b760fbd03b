// Opens the server's chat page in headless Debian Chromium (playwright-core), types two messages and
// waits for each streamed answer and the tokens/s lines, reloads (the conversation must come back),
// stops a long answer, and checks the Markdown renderer and the collapsible thinking. Prints what the
// page showed as JSON.
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
    const metas = await page.evaluate(() => [...document.querySelectorAll(".msg.assistant .meta")].map((m) => m.textContent));
    const texts = () => page.evaluate(() => [...document.querySelectorAll(".msg")].map((m) => m.innerText));
    const before = await texts();
    await page.reload({ timeout: 30000 });
    await page.waitForFunction(() => document.querySelectorAll(".msg").length > 0, null, { timeout: 15000 });
    const after = await texts();
    // Stop a long answer once it has started.
    await page.fill("#max", "1500");
    await page.fill("#input", "Tell me everything.");
    await page.press("#input", "Enter");
    await page.waitForFunction(() => { const a = document.querySelectorAll(".msg.assistant"); return a.length === 3 && a[2].querySelector(".content").textContent.length > 0; },
                               null, { timeout: 30000 });
    await page.click("#send");
    await page.waitForFunction(() => document.getElementById("send").textContent === "Send", null, { timeout: 30000 });
    const stopped = await page.evaluate(() => { const a = document.querySelectorAll(".msg.assistant .meta"); return a[a.length - 1].textContent; });
    const markdown = await page.evaluate(() => renderMarkdown("**b** and `c<d>`\n\n```py\nx < y\n```\n\n- one\n- two\n\n<script>x</script>"));
    const thinking = await page.evaluate(() => {
      const b = assistantBubble();
      b.setReasoning("plan");
      const open = b.box.querySelector("details").open;
      b.setContent("answer");
      const out = { openWhileThinking: open, openAfterAnswer: b.box.querySelector("details").open,
                    summary: b.box.querySelector("summary").textContent, text: b.box.querySelector(".rtext").textContent };
      b.box.remove();
      return out;
    });
    console.log(JSON.stringify({ model, turns, bubbles, metas, before, after, stopped, markdown, thinking, errors }));
  } finally {
    await browser.close();
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
