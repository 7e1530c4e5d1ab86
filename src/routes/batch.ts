/**
 * /v1/admin/batch — batch recommendations for every user active in a period (secret key): start
 * a job, follow its progress, resume it, read its NDJSON output (src/batch/jobs.ts).
 */
import { createRoute, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { type PartMessage, createJob, doneKeys, getJob, pendingParts } from "../batch/jobs";
import { CATEGORY_SEPARATOR, parseCategory } from "../catalog/schemas";
import type { AppEnv } from "../env";
import { ApiError } from "../errors";
import { arrangeFields, arrangementOf } from "../lib/arrange-input";
import { errors, featureApp, json } from "../lib/openapi";

const JobSchema = z
  .object({
    id: z.string(),
    status: z.enum(["queued", "running", "done"]),
    since: z.string().openapi({ description: "Users with an event at or after this time." }),
    users: z.number().int(),
    parts: z.number().int(),
    done_parts: z.number().int(),
    created_at: z.string(),
    finished_at: z.string().nullable(),
    output: z.string().openapi({ description: "Where to read the NDJSON output (one line per user: user_id, items, source, reason, model_version)." }),
  })
  .openapi("BatchJob");

const StartBody = z
  .strictObject({
    since_days: z.number().positive().max(365).default(30).openapi({ description: "Users active within this many days (default 30)." }),
    k: z.number().int().min(1).max(1000).default(10).openapi({ description: "Items per user (at most MAX_K, default 10)." }),
    part_size: z.number().int().min(1).max(1000).default(200).openapi({ description: "Users per part (one queue message each; default 200)." }),
    category: z.string().min(1).max(900).optional(),
    exclude_recent: z.boolean().default(false),
    exclude_seen: z.boolean().default(false),
    ...arrangeFields,
  })
  .openapi("BatchStart");

const Params = z.object({ id: z.string().min(1).max(64).openapi({ param: { name: "id", in: "path" } }) });

const start = createRoute({
  method: "post",
  path: "/",
  summary: "Start a batch of recommendations",
  description:
    "Lists every user with an event in the period (the event log), splits them into parts and queues one message per part (BATCH_QUEUE); the consumer writes each part's lists as NDJSON to R2 (BATCH_BUCKET). Follow it with GET …/{id}; read it with GET …/{id}/output.",
  tags: ["admin"],
  request: { body: { required: true, content: { "application/json": { schema: StartBody } } } },
  responses: { 202: json(JobSchema, "The job, queued"), ...errors(403, 503) },
});

const show = createRoute({
  method: "get",
  path: "/{id}",
  summary: "A batch job's progress",
  tags: ["admin"],
  request: { params: Params },
  responses: { 200: json(JobSchema, "The job"), ...errors(403, 404) },
});

const resume = createRoute({
  method: "post",
  path: "/{id}/resume",
  summary: "Send the parts not done yet again",
  description: "For a job whose messages ran out of retries (or a queue that lost them): every part not done is queued again; done parts are never redone.",
  tags: ["admin"],
  request: { params: Params },
  responses: { 200: json(JobSchema.extend({ resent: z.number().int() }), "The job and how many parts were sent again"), ...errors(403, 404, 503) },
});

const output = createRoute({
  method: "get",
  path: "/{id}/output",
  summary: "A batch job's output (NDJSON)",
  description: "The lines of every part written so far, in part order (all users once the job is done).",
  tags: ["admin"],
  request: { params: Params },
  responses: { 200: { description: "One JSON object per line", content: { "application/x-ndjson": { schema: z.string() } } }, ...errors(403, 404, 503) },
});

function bindings(c: Context<AppEnv>): { queue: Queue<PartMessage>; bucket: R2Bucket } {
  const queue = c.env.BATCH_QUEUE;
  const bucket = c.env.BATCH_BUCKET;
  if (!queue || !bucket) throw new ApiError(503, "batch_unavailable", "batch recommendations need the BATCH_QUEUE and BATCH_BUCKET bindings (wrangler.toml)");
  return { queue, bucket };
}

async function send(queue: Queue<PartMessage>, messages: PartMessage[]) {
  for (let i = 0; i < messages.length; i += 100) await queue.sendBatch(messages.slice(i, i + 100).map((body) => ({ body })));
}

const out = (j: NonNullable<Awaited<ReturnType<typeof getJob>>>) => ({
  id: j.id,
  status: j.status,
  since: new Date(j.since_ms).toISOString(),
  users: j.users,
  parts: j.parts,
  done_parts: j.done_parts,
  created_at: new Date(j.created_at).toISOString(),
  finished_at: j.finished_at === null ? null : new Date(j.finished_at).toISOString(),
  output: `/v1/admin/batch/${j.id}/output`,
});

async function found(c: Context<AppEnv>, id: string) {
  const j = await getJob(c.var.db, id);
  if (!j) throw new ApiError(404, "batch_not_found", `no batch job ${id}`, { field: "id" });
  return j;
}

export const batch = featureApp()
  .openapi(start, async (c) => {
    const b = c.req.valid("json");
    const { queue } = bindings(c);
    if (b.k > c.var.config.MAX_K) throw new ApiError(400, "invalid_request", `body.k: must be at most ${c.var.config.MAX_K}`, { field: "body.k" });
    const category = b.category !== undefined ? parseCategory(b.category).join(CATEGORY_SEPARATOR) : undefined;
    const now = Date.now();
    const { job, messages } = await createJob(c.var.db, {
      sinceMs: now - b.since_days * 86_400_000,
      partSize: b.part_size,
      nowMs: now,
      options: { k: b.k, category: category || undefined, excludeRecent: b.exclude_recent, excludeSeen: b.exclude_seen, arrange: arrangementOf(b) },
    });
    await send(queue, messages);
    return c.json(out(job), 202);
  })
  .openapi(show, async (c) => c.json(out(await found(c, c.req.valid("param").id)), 200))
  .openapi(resume, async (c) => {
    const { queue } = bindings(c);
    const j = await found(c, c.req.valid("param").id);
    const messages = await pendingParts(c.var.db, j.id);
    await send(queue, messages);
    return c.json({ ...out(j), resent: messages.length }, 200);
  })
  .openapi(output, async (c) => {
    const { bucket } = bindings(c);
    const j = await found(c, c.req.valid("param").id);
    const keys = await doneKeys(c.var.db, j.id);
    const stream = new ReadableStream<Uint8Array>({
      async pull(controller) {
        for (;;) {
          const key = keys.shift();
          if (key === undefined) return controller.close();
          const obj = await bucket.get(key);
          if (!obj) continue;
          const bytes = new Uint8Array(await obj.arrayBuffer());
          if (!bytes.length) continue;
          return controller.enqueue(bytes);
        }
      },
    });
    return new Response(stream, { status: 200, headers: { "content-type": "application/x-ndjson" } }) as never;
  });
