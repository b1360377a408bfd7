// The official openai Node SDK against the gateway: one JSON call, one stream; prints JSON.
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.env.BASE_URL, apiKey: "unused", maxRetries: 0 });
const messages = [{ role: "user", content: "Say hello from Node" }];

const answer = await client.chat.completions.create({ model: "gpt-4o-mini", messages });
const stream = await client.chat.completions.create({
  model: "gpt-4o-mini",
  messages,
  stream: true,
  stream_options: { include_usage: true },
});
let streamed = "";
let usage = null;
let malformed = 0;
for await (const chunk of stream) {
  if (!chunk.id || !chunk.model) malformed += 1;
  for (const choice of chunk.choices) streamed += choice.delta?.content ?? "";
  if (chunk.usage) usage = chunk.usage;
}
console.log(
  JSON.stringify({
    content: answer.choices[0].message.content,
    usage: answer.usage,
    streamed,
    stream_usage: usage,
    malformed,
  }),
);
