/**
 * The local Upstash REST bridge speaks the protocol @upstash/redis uses, against real Redis.
 */
import { Redis } from "@upstash/redis";
import { describe, expect, inject, it } from "vitest";

const url = inject("bridgeUrl");
const token = inject("bridgeToken");

async function post(path: string, body: unknown, headers: Record<string, string> = {}) {
  const r = await fetch(url + path, { method: "POST", headers: { authorization: `Bearer ${token}`, ...headers }, body: JSON.stringify(body) });
  return { status: r.status, body: (await r.json()) as any };
}

describe("Upstash REST bridge", () => {
  it("runs one command and answers {result}", async () => {
    expect(await post("/", ["SET", "bridge:a", "héllo"])).toEqual({ status: 200, body: { result: "OK" } });
    expect((await post("/", ["GET", "bridge:a"])).body).toEqual({ result: "héllo" });
    expect((await post("/", ["GET", "bridge:missing"])).body).toEqual({ result: null });
    expect((await post("/", ["INCRBY", "bridge:n", 5])).body).toEqual({ result: 5 });
  });

  it("base64-encodes every string with Upstash-Encoding: base64", async () => {
    await post("/", ["RPUSH", "bridge:list", "x", "yz"]);
    const r = await post("/", ["LRANGE", "bridge:list", 0, -1], { "upstash-encoding": "base64" });
    expect(r.body.result).toEqual([btoa("x"), btoa("yz")]);
  });

  it("runs a pipeline and reports errors per command", async () => {
    const r = await post("/pipeline", [["SET", "bridge:p", "1"], ["INCR", "bridge:p"], ["LPUSH", "bridge:p", "x"]]);
    expect(r.body[0]).toEqual({ result: "OK" });
    expect(r.body[1]).toEqual({ result: 2 });
    expect(r.body[2].error).toMatch(/WRONGTYPE/);
  });

  it("runs /multi-exec as one transaction", async () => {
    const r = await post("/multi-exec", [["SET", "bridge:m", "a"], ["APPEND", "bridge:m", "b"], ["GET", "bridge:m"]]);
    expect(r.body).toEqual([{ result: "OK" }, { result: 2 }, { result: "ab" }]);
  });

  it("refuses a missing or wrong bearer token with 401", async () => {
    const r = await fetch(url, { method: "POST", body: JSON.stringify(["PING"]) });
    expect(r.status).toBe(401);
    const r2 = await fetch(url, { method: "POST", headers: { authorization: "Bearer nope" }, body: JSON.stringify(["PING"]) });
    expect(r2.status).toBe(401);
  });

  it("answers a Redis error as 400 {error}", async () => {
    const r = await post("/", ["NOSUCHCOMMAND"]);
    expect(r.status).toBe(400);
    expect(r.body.error).toMatch(/unknown command/i);
  });

  it("serves the official @upstash/redis client, scripts included", async () => {
    const redis = new Redis({ url, token, enableTelemetry: false });
    await redis.set("bridge:json", { a: 1 });
    expect(await redis.get("bridge:json")).toEqual({ a: 1 });
    const p = redis.pipeline();
    p.set("bridge:x", "1");
    p.incr("bridge:x");
    expect(await p.exec()).toEqual(["OK", 2]);
    const tx = redis.multi();
    tx.set("bridge:y", "v");
    tx.get("bridge:y");
    expect(await tx.exec()).toEqual(["OK", "v"]);
    const script = redis.createScript<string>("return ARGV[1] .. KEYS[1]");
    expect(await script.exec(["k"], ["v-"])).toBe("v-k");
  });
});
