/**
 * Vitest global setup: a real redis-server (throwaway data folder) and our Upstash REST bridge in
 * front of it, for the duration of a test project. Their addresses are provided to the tests
 * (and to the workerd bindings) through vitest's provide/inject.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestProject } from "vitest/node";
import { startBridge } from "../../local/redis-bridge.ts";
import { startRedis } from "../../local/redis-server.ts";

declare module "vitest" {
  export interface ProvidedContext {
    bridgeUrl: string;
    bridgeToken: string;
    redisPort: number;
    deadUrl: string;
  }
}

export default async function setup(project: TestProject) {
  const dir = mkdtempSync(join(tmpdir(), "gru-test-redis-"));
  const redis = await startRedis({ dir, persist: false });
  const token = "test-bridge-token";
  const bridge = await startBridge({ redisPort: redis.port, token });
  // A bridge whose Redis is gone: answers, but every command fails (Redis down behind it).
  project.provide("bridgeUrl", bridge.url);
  project.provide("bridgeToken", token);
  project.provide("redisPort", redis.port);
  project.provide("deadUrl", "http://127.0.0.1:9");
  return async () => {
    await bridge.close();
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  };
}
