/**
 * Vitest global setup: a real redis-server (throwaway data folder) and our Upstash REST bridge in
 * front of it, for the duration of a test project. Their addresses are provided to the tests
 * (and to the workerd bindings) through vitest's provide/inject.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestProject } from "vitest/node";
import { startBridge } from "../../local/redis-bridge.ts";
import { startRedis } from "../../local/redis-server.ts";
import { startFaultProxy } from "./fault-proxy.ts";

declare module "vitest" {
  export interface ProvidedContext {
    bridgeUrl: string;
    bridgeToken: string;
    redisPort: number;
    deadUrl: string;
    /** The bridge behind a fault-injecting, request-counting proxy (fault-proxy.ts). */
    faultUrl: string;
  }
}

/** A loopback port nothing listens on (taken from the OS, then released). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((res) => server.listen(0, "127.0.0.1", res));
  const port = (server.address() as { port: number }).port;
  await new Promise((res) => server.close(res));
  return port;
}

export default async function setup(project: TestProject) {
  const dir = mkdtempSync(join(tmpdir(), "gru-test-redis-"));
  const redis = await startRedis({ dir, persist: false });
  const token = "test-bridge-token";
  const bridge = await startBridge({ redisPort: redis.port, token });
  const proxy = await startFaultProxy(bridge.url);
  // A bridge whose Redis is gone: answers, but every command fails with a 503 (Redis down behind
  // it, as Upstash answers). Not a closed port: workerd logs every refused connection as an
  // uncaught exception, even when the fetch's rejection is handled.
  const dead = await startBridge({ redisPort: await closedPort(), token });
  project.provide("bridgeUrl", bridge.url);
  project.provide("bridgeToken", token);
  project.provide("redisPort", redis.port);
  project.provide("deadUrl", dead.url);
  project.provide("faultUrl", proxy.url);
  return async () => {
    await proxy.close();
    await bridge.close();
    await dead.close();
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  };
}
