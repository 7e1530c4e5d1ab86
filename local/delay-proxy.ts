/**
 * A delaying TCP proxy on loopback, put between the REST bridge and redis-server by the load test
 * to make Redis slow on demand: every chunk Redis sends back is held for `delayMs` (order kept)
 * before it reaches the client. When the server goes away, the client's connection is closed too,
 * as a network path to a dead server would be.
 */
import { createServer, type Server, Socket } from "node:net";

export interface DelayProxy {
  port: number;
  /** Current delay of each reply chunk, ms. */
  delayMs: number;
  close(): Promise<void>;
}

/** Start a proxy on 127.0.0.1 (a free port) in front of 127.0.0.1:`targetPort`. */
export async function startDelayProxy(o: { targetPort: number; delayMs?: number }): Promise<DelayProxy> {
  const sockets = new Set<Socket>();
  const proxy: DelayProxy = { port: 0, delayMs: o.delayMs ?? 0, close: async () => {} };
  const server: Server = createServer((client) => {
    const upstream = new Socket();
    sockets.add(client).add(upstream);
    // Reply chunks waiting to be passed on, oldest first; one timer drains them in order.
    const queue: { due: number; data: Buffer }[] = [];
    let timer: NodeJS.Timeout | undefined;
    const pump = () => {
      timer = undefined;
      while (queue.length && queue[0]!.due <= Date.now()) {
        const { data } = queue.shift()!;
        if (!client.destroyed) client.write(data);
      }
      if (queue.length) timer = setTimeout(pump, queue[0]!.due - Date.now());
    };
    const end = () => {
      if (timer) clearTimeout(timer);
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
    upstream.connect(o.targetPort, "127.0.0.1");
    client.on("data", (d) => upstream.write(d));
    upstream.on("data", (d) => {
      if (proxy.delayMs <= 0 && !queue.length) return void client.write(d);
      // Never before the chunk ahead of it, so bytes stay in order when the delay changes.
      const due = Math.max(queue.at(-1)?.due ?? 0, Date.now() + proxy.delayMs);
      queue.push({ due, data: d });
      timer ??= setTimeout(pump, due - Date.now());
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  proxy.port = (server.address() as { port: number }).port;
  proxy.close = () =>
    new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    });
  return proxy;
}
