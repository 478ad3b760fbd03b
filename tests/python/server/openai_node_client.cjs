// Drives a running k2mlx server with the official `openai` npm package: plain and streamed chat,
// a forced tool call (also streamed, reassembled by the SDK's helper) sent back with its result. Prints one JSON object with what it saw.
// Usage: node openai_node_client.cjs BASE_URL   (NODE_PATH must reach .deps/node/node_modules)
const OpenAI = require("openai").default;

async function main() {
  const client = new OpenAI({ baseURL: process.argv[2], apiKey: "unused", maxRetries: 0, timeout: 60000 });
  const out = {};
  const messages = [{ role: "user", content: "Hello from node" }];
  const full = await client.chat.completions.create({ model: "tiny-kimi", messages, max_tokens: 8, temperature: 0 });
  out.full = { content: full.choices[0].message.content, finish: full.choices[0].finish_reason, usage: full.usage };

  const stream = await client.chat.completions.create({
    model: "tiny-kimi", messages, max_tokens: 8, temperature: 0, stream: true, stream_options: { include_usage: true },
  });
  let text = "", chunks = 0, usage = null, finish = null;
  for await (const chunk of stream) {
    chunks++;
    if (chunk.usage) usage = chunk.usage;
    const c = chunk.choices[0];
    if (!c) continue;
    text += (c.delta.content || "") + (c.delta.reasoning_content || "");
    if (c.finish_reason) finish = c.finish_reason;
  }
  out.stream = { text, chunks, usage, finish };

  const tools = [{ type: "function", function: { name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" } } } } }];
  const call = await client.chat.completions.create({
    model: "tiny-kimi", messages: [{ role: "user", content: "Weather in Oslo?" }], tools, max_tokens: 6, temperature: 0,
    tool_choice: { type: "function", function: { name: "get_weather" } },
  });
  const tc = call.choices[0].message.tool_calls[0];
  out.tool_call = { id: tc.id, name: tc.function.name };
  // The same call streamed, reassembled by the SDK's own stream helper from the argument deltas.
  const helper = client.chat.completions.stream({
    model: "tiny-kimi", messages: [{ role: "user", content: "Weather in Oslo?" }], tools, max_tokens: 6, temperature: 0,
    tool_choice: { type: "function", function: { name: "get_weather" } },
  });
  const streamed = (await helper.finalChatCompletion()).choices[0].message.tool_calls[0];
  out.streamed_tool_call = { id: streamed.id, name: streamed.function.name, arguments: streamed.function.arguments,
                             same_arguments: streamed.function.arguments === tc.function.arguments };
  const back = await client.chat.completions.create({
    model: "tiny-kimi", tools, max_tokens: 4, temperature: 0,
    messages: [
      { role: "user", content: "Weather in Oslo?" },
      { role: "assistant", content: null, tool_calls: [{ id: tc.id, type: "function", function: { name: "get_weather", arguments: '{"city": "Oslo"}' } }] },
      { role: "tool", tool_call_id: tc.id, content: '{"temperature_c": 3}' },
    ],
  });
  out.tool_result = { finish: back.choices[0].finish_reason, usage: back.usage };
  try {
    await client.chat.completions.create({ model: "nope", messages, max_tokens: 2 });
    out.error = null;
  } catch (e) {
    out.error = { status: e.status, message: e.message };
  }
  console.log(JSON.stringify(out));
}

main().catch((e) => { console.error(e); process.exit(1); });
