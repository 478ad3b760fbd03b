// The chat page as one raw string, with no external assets. It speaks the same OpenAI API as any other
// client: the page holds the conversation (kept in localStorage across reloads) and resends it each turn,
// so the server's prompt cache reuses the prefix. Thinking is shown apart, answers as rendered Markdown.
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
  .msg.assistant { white-space: normal; }
  details.reasoning { color: var(--muted); border-left: 3px solid var(--line); padding-left: 8px; margin-bottom: 6px; }
  details.reasoning summary { cursor: pointer; font-size: 13px; }
  details.reasoning .rtext { white-space: pre-wrap; font-style: italic; }
  details.reasoning.empty { display: none; }
  .content p { margin: 0 0 8px; }
  .content p:last-child { margin-bottom: 0; }
  .content pre { background: #f0f0ec; padding: 8px; border-radius: 6px; overflow-x: auto; }
  .content code { font: 13px/1.4 ui-monospace, monospace; background: #f0f0ec; padding: 0 3px; border-radius: 3px; }
  .content pre code { padding: 0; background: none; }
  .content h1, .content h2, .content h3 { font-size: 16px; margin: 8px 0 4px; }
  .meta { color: var(--muted); font-size: 12px; margin-top: 4px; }
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
const history = [];  // the conversation as sent to the API
const shown = [];    // what each bubble showed: {role, content, reasoning, meta}
let controller = null;
const STORE = "k2mlx-chat";
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

// A small Markdown subset (fenced code, inline code, bold, italic, headings, lists, links), rendered from
// escaped text so that nothing the model writes becomes markup of its own.
function escapeHtml(s) {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}
function inline(s) {
  const codes = [];
  s = s.replace(/`([^`\n]+)`/g, (_, c) => { codes.push(c); return "\u0000" + (codes.length - 1) + "\u0000"; });
  s = escapeHtml(s)
    .replace(/\*\*([^*\n]+)\*\*/g, "<strong>$1</strong>")
    .replace(/(^|[^*])\*([^*\n]+)\*/g, "$1<em>$2</em>")
    .replace(/\[([^\]\n]+)\]\((https?:\/\/[^)\s]+)\)/g, '<a href="$2" target="_blank" rel="noopener">$1</a>');
  return s.replace(/\u0000(\d+)\u0000/g, (_, i) => "<code>" + escapeHtml(codes[Number(i)]) + "</code>");
}
function renderMarkdown(text) {
  const out = [];
  const parts = text.split(/^```/m);
  parts.forEach((part, i) => {
    if (i % 2 === 1) {  // inside a fence: the first line names the language
      const nl = part.indexOf("\n");
      const lang = nl < 0 ? "" : part.slice(0, nl).trim();
      const code = nl < 0 ? "" : part.slice(nl + 1).replace(/\n$/, "");
      out.push('<pre><code' + (lang ? ' class="language-' + escapeHtml(lang) + '"' : "") + ">" + escapeHtml(code) + "</code></pre>");
      return;
    }
    if (i > 0) part = part.replace(/^[^\n]*\n?/, "");  // the rest of the closing fence line
    for (let block of part.split(/\n{2,}/)) {
      block = block.replace(/^\n+|\n+$/g, "");
      if (!block.trim()) continue;
      const lines = block.split("\n");
      if (lines.every((l) => /^\s*([-*]|\d+\.)\s+/.test(l))) {
        const ordered = /^\s*\d+\./.test(lines[0]);
        out.push((ordered ? "<ol>" : "<ul>") + lines.map((l) => "<li>" + inline(l.replace(/^\s*([-*]|\d+\.)\s+/, "")) + "</li>").join("") +
                 (ordered ? "</ol>" : "</ul>"));
      } else if (/^#{1,3}\s/.test(lines[0]) && lines.length === 1) {
        const level = lines[0].match(/^#+/)[0].length;
        out.push("<h" + level + ">" + inline(lines[0].replace(/^#+\s+/, "")) + "</h" + level + ">");
      } else {
        out.push("<p>" + lines.map(inline).join("<br>") + "</p>");
      }
    }
  });
  return out.join("");
}

function bubble(role) {
  const div = document.createElement("div");
  div.className = "msg " + role;
  $("log").appendChild(div);
  return div;
}

// An assistant bubble: collapsible thinking, the rendered answer, and its statistics line.
function assistantBubble() {
  const box = bubble("assistant");
  const details = document.createElement("details");
  details.className = "reasoning empty";
  details.open = true;
  const summary = document.createElement("summary");
  summary.textContent = "Thinking";
  const rtext = document.createElement("div");
  rtext.className = "rtext";
  details.append(summary, rtext);
  const content = document.createElement("div");
  content.className = "content";
  const meta = document.createElement("div");
  meta.className = "meta";
  box.append(details, content, meta);
  return {
    box, meta,
    setReasoning(t) { rtext.textContent = t; details.classList.toggle("empty", !t); },
    setContent(t) { content.innerHTML = renderMarkdown(t); if (t && rtext.textContent) details.open = false; },
  };
}

function save() {
  try { localStorage.setItem(STORE, JSON.stringify({ history, shown })); } catch (e) { /* storage full or off */ }
}

function restore() {
  let saved = null;
  try { saved = JSON.parse(localStorage.getItem(STORE) || "null"); } catch (e) { saved = null; }
  if (!saved || !Array.isArray(saved.history) || !Array.isArray(saved.shown)) return;
  history.push(...saved.history);
  for (const m of saved.shown) {
    if (m.role === "user") { bubble("user").textContent = m.content; continue; }
    const b = assistantBubble();
    b.setReasoning(m.reasoning || "");
    b.setContent(m.content || "");
    b.meta.textContent = m.meta || "";
  }
  scroll();
}

function scroll() { $("log").scrollTop = $("log").scrollHeight; }

async function send(text) {
  history.push({ role: "user", content: text });
  shown.push({ role: "user", content: text });
  bubble("user").textContent = text;
  const b = assistantBubble();
  scroll();
  controller = new AbortController();
  $("send").textContent = "Stop";
  const started = performance.now();
  let first = 0, tokens = 0, answer = "", reasoning = "", calls = "", usage = null, kept = false;
  const stats = (n, done) => {
    const secs = first ? (performance.now() - first) / 1000 : 0;
    const rate = secs > 0 && n > 1 ? ((n - 1) / secs).toFixed(1) + " tok/s" : "";
    if (!done) return rate;
    const ttft = first ? ((first - started) / 1000).toFixed(2) + " s to first token, " : "";
    return ttft + n + " tokens" + (rate ? ", " + rate : "");
  };
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
          if (d.reasoning_content) { reasoning += d.reasoning_content; b.setReasoning(reasoning); }
          if (d.content) answer += d.content;
          if (d.tool_calls) calls += "\n[tool call] " + JSON.stringify(d.tool_calls);
          if (d.content || d.tool_calls) b.setContent(answer + calls);
        }
      }
      const rate = stats(tokens, false);
      if (rate) { $("stats").textContent = rate; b.meta.textContent = rate; }
      scroll();
    }
    const n = usage ? usage.completion_tokens : tokens;
    b.meta.textContent = stats(n, true);
    $("stats").textContent = stats(n, true) +
      (usage && usage.prompt_tokens_details ? ", " + usage.prompt_tokens_details.cached_tokens + " prompt tokens reused" : "");
    history.push({ role: "assistant", content: answer });
    kept = true;
  } catch (e) {
    if (e.name === "AbortError") {
      b.meta.textContent = stats(tokens, true) + " (stopped)";
      history.push({ role: "assistant", content: answer });
      kept = true;
    } else {
      const err = document.createElement("div");
      err.className = "error";
      err.textContent = "Error: " + e.message;
      b.box.appendChild(err);
      history.pop();
      shown.pop();
    }
  } finally {
    if (kept) shown.push({ role: "assistant", content: answer + calls, reasoning, meta: b.meta.textContent });
    save();
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
  shown.length = 0;
  localStorage.removeItem(STORE);
  $("log").innerHTML = "";
  $("stats").textContent = "";
});
restore();
</script>
</body>
</html>
)HTML";
}

}  // namespace k2
