/**
 * A CPU profile of the worker running in workerd, through its V8 inspector (miniflare's
 * `inspectorPort`): the worker, and the Durable Objects its script defines, run in one isolate
 * locally, so one profile holds the request path and the item shards. Used by `npm run bench:scale
 * -- --profile`. The `.cpuprofile` opens in Chrome DevTools (Performance panel).
 */

/** V8's profile format (Profiler.stop). */
export interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** Connect to the first inspector target on 127.0.0.1:`port` (workerd's worker isolate). */
export async function inspectWorker(port: number): Promise<{ start(): Promise<void>; stop(): Promise<CpuProfile> }> {
  const targets = (await (await fetch(`http://127.0.0.1:${port}/json`)).json()) as { webSocketDebuggerUrl: string; title?: string }[];
  const target = targets.find((t) => t.webSocketDebuggerUrl);
  if (!target) throw new Error(`no inspector target on port ${port}`);
  const ws = new WebSocket(target.webSocketDebuggerUrl);
  await new Promise<void>((ok, fail) => {
    ws.addEventListener("open", () => ok());
    ws.addEventListener("error", () => fail(new Error(`inspector ${target.webSocketDebuggerUrl}: connection failed`)));
  });
  let id = 0;
  const waiting = new Map<number, (r: unknown) => void>();
  ws.addEventListener("message", (e: { data: unknown }) => {
    const m = JSON.parse(String(e.data)) as { id?: number; result?: unknown; error?: { message: string } };
    if (m.id !== undefined) waiting.get(m.id)?.(m.error ? new Error(m.error.message) : m.result);
  });
  const send = (method: string, params: Record<string, unknown> = {}) =>
    new Promise<any>((ok, fail) => {
      const n = ++id;
      waiting.set(n, (r) => (r instanceof Error ? fail(r) : ok(r)));
      ws.send(JSON.stringify({ id: n, method, params }));
    });
  return {
    async start() {
      await send("Profiler.enable");
      await send("Profiler.setSamplingInterval", { interval: 200 });
      await send("Profiler.start");
    },
    async stop() {
      const { profile } = await send("Profiler.stop");
      ws.close();
      return profile as CpuProfile;
    },
  };
}

/** The `n` functions with the most self time (sampled), with their share of all samples. */
export function topSelfTime(p: CpuProfile, n: number): { name: string; ms: number; share: number }[] {
  const byNode = new Map(p.nodes.map((x) => [x.id, x]));
  const self = new Map<string, number>();
  let total = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const node = byNode.get(p.samples[i]!)!;
    const f = node.callFrame;
    const file = f.url.split("/").pop() ?? "";
    const name = `${f.functionName || "(anonymous)"}${file ? ` ${file}:${f.lineNumber + 1}` : ""}`;
    const dt = (p.timeDeltas[i] ?? 0) / 1000;
    self.set(name, (self.get(name) ?? 0) + dt);
    total += dt;
  }
  return [...self.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([name, ms]) => ({ name, ms, share: ms / total }));
}
