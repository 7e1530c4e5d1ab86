/**
 * `npm run export-events -- [--url URL] [--key SECRET_KEY] [--since TIME] [--out FILE]`
 * Streams a deployment's event log (GET /v1/events/export, NDJSON) to a file or stdout, resuming
 * after the last `seq` received if the connection drops. The output is what the training code
 * reads (`data.event_log`). URL and key default to GRU_URL and GRU_SECRET_KEY.
 */
import { createWriteStream } from "node:fs";
import { parseArgs } from "node:util";

const { values: a } = parseArgs({
  options: {
    url: { type: "string", default: process.env.GRU_URL ?? "http://127.0.0.1:8787" },
    key: { type: "string", default: process.env.GRU_SECRET_KEY ?? process.env.SECRET_KEYS?.split(",")[0] ?? "sk_dev" },
    since: { type: "string" },
    until: { type: "string" },
    out: { type: "string" },
  },
});
const out = a.out ? createWriteStream(a.out) : process.stdout;
let after = 0;
let lines = 0;
for (let attempt = 0; ; attempt++) {
  const q = new URLSearchParams({ after_seq: String(after) });
  if (a.since) q.set("since", a.since);
  if (a.until) q.set("until", a.until);
  try {
    const res = await fetch(`${a.url!.replace(/\/+$/, "")}/v1/events/export?${q}`, { headers: { authorization: `Bearer ${a.key}` } });
    if (!res.ok || !res.body) {
      console.error(`export failed: ${res.status} ${await res.text()}`);
      process.exit(1);
    }
    let rest = "";
    const dec = new TextDecoder();
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      rest += dec.decode(chunk, { stream: true });
      const parts = rest.split("\n");
      rest = parts.pop()!;
      for (const line of parts) {
        if (!line) continue;
        after = Math.max(after, Number((JSON.parse(line) as { seq: number }).seq));
        out.write(`${line}\n`);
        lines++;
      }
    }
    break;
  } catch (e) {
    if (attempt >= 5) throw e;
    console.error(`connection lost after ${lines} events (${(e as Error).message}); resuming after seq ${after}`);
    await new Promise((r) => setTimeout(r, 1000 * 2 ** attempt));
  }
}
if (out !== process.stdout) out.end();
console.error(`exported ${lines} events`);
