/**
 * A small Upstash-compatible REST bridge in front of a real redis-server, so the worker uses the
 * very same @upstash/redis client locally as in production. Only what the project needs:
 *   POST /             one command as a JSON array       -> {"result": ...} | {"error": "..."}
 *   POST /pipeline     array of commands                  -> [{"result"}|{"error"}, ...]
 *   POST /multi-exec   array of commands, run in MULTI    -> [{"result"}|{"error"}, ...]
 * Bearer token required. With `Upstash-Encoding: base64` every string in a result is base64.
 * Upstash accepts the Lua shebang flag `allow-key-locking` (used by @upstash/ratelimit) that
 * redis-server 7.0 rejects: the bridge strips it from scripts and maps EVALSHA digests of the
 * original text to the stripped script's, as Upstash would see one script.
 * Fails fast (no offline queue) when Redis is down, as a hosted service would answer 5xx.
 */
import { createHash } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { createRequire } from "node:module";
import type { Redis as RedisClient } from "ioredis";

// Loaded through require so that several test projects in one process share one instance.
const Redis: typeof RedisClient = createRequire(import.meta.url)("ioredis");

export interface BridgeOptions {
  /** redis-server port on 127.0.0.1. */
  redisPort: number;
  /** Bearer token clients must send. */
  token: string;
  /** Port to listen on (0: any free port). */
  port?: number;
  host?: string;
}

export interface Bridge {
  url: string;
  port: number;
  close(): Promise<void>;
}

type Reply = Buffer | string | number | null | Reply[];

const UPSTASH_ONLY_FLAGS = new Set(["allow-key-locking"]);
const sha1 = (s: string) => createHash("sha1").update(s).digest("hex");

/** Script digests of the original text -> digest of what redis-server was given. */
const shaMap = new Map<string, string>();

function stripFlags(script: string): string {
  const m = /^#!lua([^\n]*)/.exec(script);
  if (!m) return script;
  const flags = /flags=(\S*)/.exec(m[1]!);
  if (!flags) return script;
  const kept = flags[1]!.split(",").filter((f) => f && !UPSTASH_ONLY_FLAGS.has(f));
  const head = `#!lua${kept.length ? ` flags=${kept.join(",")}` : ""}`;
  const out = head + script.slice(m[0].length);
  if (out !== script) shaMap.set(sha1(script), sha1(out));
  return out;
}

/** Rewrite a command for redis-server where Upstash accepts more. */
function translate(cmd: string, args: string[]): [string, string[]] {
  const c = cmd.toUpperCase();
  if ((c === "EVAL" || c === "EVAL_RO") && args.length) return [cmd, [stripFlags(args[0]!), ...args.slice(1)]];
  if ((c === "EVALSHA" || c === "EVALSHA_RO") && args.length) return [cmd, [shaMap.get(args[0]!.toLowerCase()) ?? args[0]!, ...args.slice(1)]];
  if (c === "SCRIPT" && args[0]?.toUpperCase() === "LOAD" && args[1] !== undefined) return [cmd, ["LOAD", stripFlags(args[1])]];
  return [cmd, args];
}

function encode(v: Reply, base64: boolean): unknown {
  if (v === null || typeof v === "number") return v;
  if (Array.isArray(v)) return v.map((x) => encode(x, base64));
  const buf = Buffer.isBuffer(v) ? v : Buffer.from(String(v));
  return base64 ? buf.toString("base64") : buf.toString("utf8");
}

function isCommand(x: unknown): x is (string | number)[] {
  return Array.isArray(x) && x.length > 0 && x.every((a) => typeof a === "string" || typeof a === "number" || typeof a === "boolean");
}

async function readBody(req: IncomingMessage, limit = 64 * 1024 * 1024): Promise<string> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of req) {
    n += (c as Buffer).length;
    if (n > limit) throw new Error("body too large");
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks).toString("utf8");
}

export async function startBridge(o: BridgeOptions): Promise<Bridge> {
  const redis = new Redis({
    host: "127.0.0.1",
    port: o.redisPort,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    lazyConnect: true,
    retryStrategy: () => 200,
  });
  redis.on("error", () => {}); // reported per request instead
  await redis.connect().catch(() => {});

  const send = (res: ServerResponse, status: number, body: unknown) => {
    const text = JSON.stringify(body);
    res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
    res.end(text);
  };

  const server: Server = createServer(async (req, res) => {
    try {
      if (req.headers.authorization !== `Bearer ${o.token}`) return send(res, 401, { error: "Unauthorized" });
      if (req.method !== "POST") return send(res, 405, { error: "only POST is supported" });
      const base64 = String(req.headers["upstash-encoding"] ?? "").toLowerCase() === "base64";
      let body: unknown;
      try {
        body = JSON.parse(await readBody(req));
      } catch {
        return send(res, 400, { error: "ERR body is not a JSON array" });
      }
      const path = (req.url ?? "/").split("?")[0];
      if (path === "/" || path === "") {
        if (!isCommand(body)) return send(res, 400, { error: "ERR command must be a non-empty JSON array" });
        const [c0, ...a0] = body.map(String);
        const [cmd, args] = translate(c0!, a0);
        try {
          let r = (await redis.callBuffer(cmd, ...args)) as Reply;
          if (cmd.toUpperCase() === "SCRIPT" && args[0] === "LOAD") r = sha1(a0[1]!); // the digest the client computed
          return send(res, 200, { result: encode(r, base64) });
        } catch (e) {
          return replyError(res, e);
        }
      }
      if (path === "/pipeline" || path === "/multi-exec") {
        if (!Array.isArray(body) || !body.every(isCommand)) return send(res, 400, { error: "ERR body must be an array of commands" });
        const batch = path === "/pipeline" ? redis.pipeline() : redis.multi();
        for (const c of body as (string | number)[][]) {
          const [c0, ...a0] = c.map(String);
          const [cmd, args] = translate(c0!, a0);
          batch.callBuffer(cmd, ...args);
        }
        let out: [Error | null, unknown][] | null;
        try {
          out = await batch.exec();
        } catch (e) {
          return replyError(res, e);
        }
        if (!out) return send(res, 400, { error: "EXECABORT Transaction discarded" });
        return send(res, 200, out.map(([err, r]) => (err ? { error: err.message } : { result: encode(r as Reply, base64) })));
      }
      return send(res, 404, { error: `no such endpoint ${path}` });
    } catch (e) {
      send(res, 500, { error: `ERR bridge: ${(e as Error).message}` });
    }
  });

  function replyError(res: ServerResponse, e: unknown) {
    const err = e as Error & { command?: unknown };
    // Redis reply errors are the caller's fault (400); a connection problem is ours (503).
    if (err.name === "ReplyError") return send(res, 400, { error: err.message });
    return send(res, 503, { error: `ERR redis unavailable: ${err.message}` });
  }

  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.port ?? 0, o.host ?? "127.0.0.1", () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      redis.disconnect();
    },
  };
}
