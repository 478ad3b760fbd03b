// The chat page as one raw string. It speaks the same OpenAI API as any other client: the page
// holds the conversation and resends it each turn, so the server's prompt cache reuses the prefix.
#include "server/chat_page.h"

namespace k2 {

const char* chat_page_html() {
  return R"HTML(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>k2mlx chat</title>
<style>
  :root { --bg: #f6f6f3; --fg: #1d1d1b; --muted: #6b6b66; --user: #dfe9f5; --bot: #ffffff; --line: #d8d8d2; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 15px/1.5 system-ui, sans-serif; background: var(--bg); color: var(--fg);
         display: flex; flex-direction: column; height: 100vh; }
  header { display: flex; gap: 12px; align-items: center; padding: 8px 16px; border-bottom: 1px solid var(--line);
           flex-wrap: wrap; }
  header h1 { font-size: 16px; margin: 0 12px 0 0; }
  header label { color: var(--muted); font-size: 13px; }
  header input { width: 70px; }
  #key { width: 140px; }
  #log { flex: 1; overflow-y: auto; padding: 16px; display: flex; flex-direction: column; gap: 10px; }
  .msg { max-width: 800px; padding: 8px 12px; border-radius: 8px; white-space: pre-wrap; word-wrap: break-word;
         border: 1px solid var(--line); }
  .user { background: var(--user); align-self: flex-end; }
  .assistant { background: var(--bot); align-self: flex-start; }
  .reasoning { color: var(--muted); font-style: italic; border-left: 3px solid var(--line); padding-left: 8px;
               margin-bottom: 6px; }
  .reasoning:empty { display: none; }
  .error { color: #a0271d; }
  form { display: flex; gap: 8px; padding: 12px 16px; border-top: 1px solid var(--line); }
  textarea { flex: 1; min-height: 44px; max-height: 200px; font: inherit; padding: 8px; resize: vertical; }
  button { font: inherit; padding: 6px 14px; }
  #stats { color: var(--muted); font-size: 13px; margin-left: auto; }
</style>
</head>
<body>
<header>
  <h1>k2mlx</h1>
  <span id="model">…</span>
  <label>max tokens <input id="max" type="number" value="512" min="1"></label>
  <label>temperature <input id="temp" type="number" value="0.6" min="0" max="2" step="0.1"></label>
  <label>API key <input id="key" type="password" placeholder="(none)"></label>
  <button id="reset" type="button">New chat</button>
  <span id="stats"></span>
</header>
<div id="log"></div>
<form id="form">
  <textarea id="input" placeholder="Message (Enter to send, Shift+Enter for a new line)" autofocus></textarea>
  <button id="send" type="submit">Send</button>
</form>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const history = [];
let controller = null;
$("key").value = localStorage.getItem("k2mlx-key") || "";
$("key").addEventListener("change", () => localStorage.setItem("k2mlx-key", $("key").value));

function headers() {
  const h = { "Content-Type": "application/json" };
  if ($("key").value) h["Authorization"] = "Bearer " + $("key").value;
  return h;
}

fetch("/v1/models", { headers: headers() }).then((r) => r.json())
  .then((j) => { $("model").textContent = j.data ? j.data[0].id : (j.error ? j.error.message : ""); })
  .catch(() => {});

function bubble(role) {
  const div = document.createElement("div");
  div.className = "msg " + role;
  $("log").appendChild(div);
  return div;
}

function scroll() { $("log").scrollTop = $("log").scrollHeight; }

async function send(text) {
  history.push({ role: "user", content: text });
  bubble("user").textContent = text;
  const box = bubble("assistant");
  const reasoning = document.createElement("div");
  reasoning.className = "reasoning";
  const content = document.createElement("div");
  content.className = "content";
  box.append(reasoning, content);
  scroll();
  controller = new AbortController();
  $("send").textContent = "Stop";
  const started = performance.now();
  let first = 0, tokens = 0, answer = "", usage = null;
  try {
    const res = await fetch("/v1/chat/completions", {
      method: "POST", headers: headers(), signal: controller.signal,
      body: JSON.stringify({ messages: history, stream: true, stream_options: { include_usage: true },
                             max_tokens: Number($("max").value) || 512, temperature: Number($("temp").value) }),
    });
    if (!res.ok) {
      const j = await res.json().catch(() => ({}));
      throw new Error((j.error && j.error.message) || ("HTTP " + res.status));
    }
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const event = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        for (const line of event.split("\n")) {
          if (!line.startsWith("data: ")) continue;
          const data = line.slice(6);
          if (data === "[DONE]") continue;
          const j = JSON.parse(data);
          if (j.error) throw new Error(j.error.message);
          if (j.usage) usage = j.usage;
          const d = j.choices && j.choices[0] && j.choices[0].delta;
          if (!d) continue;
          if (d.reasoning_content || d.content) {
            if (!first) first = performance.now();
            tokens++;
          }
          if (d.reasoning_content) reasoning.textContent += d.reasoning_content;
          if (d.content) { content.textContent += d.content; answer += d.content; }
          if (d.tool_calls) content.textContent += "\n[tool call] " + JSON.stringify(d.tool_calls);
        }
      }
      const secs = first ? (performance.now() - first) / 1000 : 0;
      if (secs > 0 && tokens > 1) $("stats").textContent = ((tokens - 1) / secs).toFixed(1) + " tok/s";
      scroll();
    }
    const n = usage ? usage.completion_tokens : tokens;
    const secs = first ? (performance.now() - first) / 1000 : 0;
    const ttft = first ? ((first - started) / 1000).toFixed(2) + " s to first token, " : "";
    $("stats").textContent = ttft + n + " tokens" + (secs > 0 && n > 1 ? ", " + ((n - 1) / secs).toFixed(1) + " tok/s" : "") +
      (usage && usage.prompt_tokens_details ? ", " + usage.prompt_tokens_details.cached_tokens + " prompt tokens reused" : "");
    history.push({ role: "assistant", content: answer });
  } catch (e) {
    if (e.name === "AbortError") {
      history.push({ role: "assistant", content: answer });
    } else {
      const err = document.createElement("div");
      err.className = "error";
      err.textContent = "Error: " + e.message;
      box.appendChild(err);
      history.pop();
    }
  } finally {
    controller = null;
    $("send").textContent = "Send";
    scroll();
  }
}

$("form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  if (controller) { controller.abort(); return; }
  const text = $("input").value.trim();
  if (!text) return;
  $("input").value = "";
  send(text);
});
$("input").addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); $("form").requestSubmit(); }
});
$("reset").addEventListener("click", () => {
  if (controller) controller.abort();
  history.length = 0;
  $("log").innerHTML = "";
  $("stats").textContent = "";
});
</script>
</body>
</html>
)HTML";
}

}  // namespace k2
