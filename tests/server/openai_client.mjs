// The official openai client (npm, 6.x) against tierlm serve: chat and completions, whole
// and streamed, and an error. Prints what it got as one JSON object; the C++ test
// (tests/unit/server_openai_test.cpp) checks it against `tierlm run`.
//   node openai_client.mjs BASE_URL MODEL API_KEY
import OpenAI from 'openai';

const [, , baseURL, model, apiKey] = process.argv;
const client = new OpenAI({ baseURL: baseURL + '/v1', apiKey, maxRetries: 0, timeout: 120000 });
const messages = [
  { role: 'system', content: 'You tell stories.' },
  { role: 'user', content: 'Tell me about a cat.' },
];
const prompt = 'Once upon a time';
const out = {};

const chat = await client.chat.completions.create({ model, messages, max_tokens: 32, temperature: 0 });
out.chat = {
  id: chat.id, object: chat.object, role: chat.choices[0].message.role,
  content: chat.choices[0].message.content, finish: chat.choices[0].finish_reason, usage: chat.usage,
};

async function drain(stream, chat) {
  const r = { text: '', roles: [], finishes: [], usage: null, ids: new Set(), chunks: 0 };
  for await (const chunk of stream) {
    r.chunks++;
    r.ids.add(chunk.id);
    if (chunk.usage) r.usage = chunk.usage;
    for (const c of chunk.choices) {
      if (chat) {
        if (c.delta.role) r.roles.push(c.delta.role);
        if (c.delta.content) r.text += c.delta.content;
      } else {
        r.text += c.text;
      }
      if (c.finish_reason) r.finishes.push(c.finish_reason);
    }
  }
  r.ids = r.ids.size;
  return r;
}

out.chat_stream = await drain(await client.chat.completions.create({
  model, messages, max_tokens: 32, temperature: 0, stream: true, stream_options: { include_usage: true },
}), true);

const comp = await client.completions.create({ model, prompt, max_tokens: 32, temperature: 0 });
out.completion = { object: comp.object, text: comp.choices[0].text, finish: comp.choices[0].finish_reason, usage: comp.usage };

out.completion_stream = await drain(await client.completions.create({
  model, prompt, max_tokens: 32, temperature: 0, stream: true, stream_options: { include_usage: true },
}), false);

try {
  await client.chat.completions.create({ model: 'no-such-model', messages });
  out.error = null;
} catch (e) {
  out.error = { name: e.constructor.name, status: e.status, code: e.code ?? null };
}
try {
  const wrong = new OpenAI({ baseURL: baseURL + '/v1', apiKey: 'wrong-key', maxRetries: 0 });
  await wrong.models.list();
  out.auth_error = null;
} catch (e) {
  out.auth_error = { name: e.constructor.name, status: e.status };
}
const models = await client.models.list();
out.models = models.data.map((m) => m.id);

console.log(JSON.stringify(out));
