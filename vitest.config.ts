/**
 * Two test projects, both on real parts:
 *  - worker: tests run inside workerd (@cloudflare/vitest-plugin) with the worker's own bindings,
 *    talking to a real redis-server through our Upstash REST bridge.
 *  - node:   process-level tests (the bridge protocol, restarting the whole local stack).
 */
import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

const migrations = await readD1Migrations("./schema/migrations");

export default defineConfig({
  test: {
    projects: [
      {
        plugins: [
          cloudflareTest(({ inject }) => ({
            wrangler: { configPath: "./wrangler.toml" },
            miniflare: {
              r2Buckets: ["MODEL_BUCKET", "BATCH_BUCKET"],
              d1Databases: ["DB"],
              bindings: {
                SECRET_KEYS: "test-key,second-key",
                PUBLISHABLE_KEYS: "pk_test",
                // Signed user tokens: the first secret signs, the second (an older one) still verifies.
                USER_TOKEN_SECRETS: "ut-test-secret,ut-rotated-out",
                CORS_ORIGINS: "https://shop.example",
                RATE_LIMIT_SECRET_PER_MINUTE: "0",
                RATE_LIMIT_PUBLISHABLE_PER_MINUTE: "0",
                TEST_MIGRATIONS: migrations,
                UPSTASH_REDIS_REST_URL: inject("bridgeUrl"),
                UPSTASH_REDIS_REST_TOKEN: inject("bridgeToken"),
                REDIS_TIMEOUT_MS: "5000", // generous: CI and shared machines are loaded
                WRITE_WAIT_MS: "20000",
                DEAD_REDIS_URL: inject("deadUrl"),
                REQUEST_LOG: "off",
                // fuzz.test.ts: runs per property (default 100), a seed to replay a run, and
                // FUZZ_RANDOM=1 for a campaign with fresh seeds (the default replays a fixed one).
                FUZZ_RUNS: process.env.FUZZ_RUNS ?? "",
                FUZZ_SEED: process.env.FUZZ_SEED ?? "",
                FUZZ_RANDOM: process.env.FUZZ_RANDOM ?? "",
                FAULT_REDIS_URL: inject("faultUrl"),
              },
            },
          })),
        ],
        test: {
          name: "worker",
          include: ["test/worker/**/*.test.ts"],
          globalSetup: ["test/setup/redis.ts"],
          setupFiles: ["test/setup/d1.ts"],
          testTimeout: 60_000,
        },
      },
      {
        test: {
          name: "node",
          include: ["test/node/**/*.test.ts"],
          environment: "node",
          globalSetup: ["test/setup/redis.ts"],
          testTimeout: 180_000,
          hookTimeout: 180_000,
        },
      },
    ],
  },
});
