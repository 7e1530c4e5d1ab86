/**
 * Batch recommendations through the real local queue and R2 (miniflare): a job for the users
 * active in a period, its progress, its NDJSON output (each user once, the same rules as the API),
 * and resuming a job whose part was lost.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { api, apiText, ev, manifest, uid } from "./helpers";

const ids = manifest.items.ids;

/** Poll the job until `done` holds. */
async function jobWhen(id: string, done: (j: any) => boolean, timeoutMs = 30_000): Promise<any> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const r = await api(`/v1/admin/batch/${id}`);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    if (done(r.body) || Date.now() > until) return r.body;
    await new Promise((res) => setTimeout(res, 200));
  }
}

async function output(id: string): Promise<any[]> {
  const r = await apiText(`/v1/admin/batch/${id}/output`);
  expect(r.status).toBe(200);
  expect(r.headers.get("content-type")).toContain("application/x-ndjson");
  return r.text.split("\n").filter(Boolean).map((l) => JSON.parse(l));
}

describe("batch recommendations", () => {
  it("writes one list per user active in the period, through the queue, with the API's rules", async () => {
    const users = Array.from({ length: 7 }, () => uid("batch"));
    const old = uid("batch-old");
    const now = Date.now();
    for (const [n, u] of users.entries()) {
      await api("/v1/events", { body: ids.slice(10 + n, 14 + n).map((id, j) => ev(u, id, { event_id: `e${j}`, timestamp: now - 3_600_000 + j })) });
    }
    await api("/v1/events", { body: ev(users[0]!, ids[40]!, { type: "purchase", event_id: "buy" }) });
    await api("/v1/events", { body: ev(old, ids[5]!, { timestamp: now - 40 * 86_400_000 }) });
    // the event log is written after each response: wait until every active user is in it
    for (let t = 0; t < 100; t++) {
      const row = await env.DB.prepare("SELECT count(DISTINCT user_id) AS n FROM events WHERE user_id LIKE 'batch-%'").first<{ n: number }>();
      if (row!.n >= 8) break;
      await new Promise((res) => setTimeout(res, 100));
    }
    const start = await api("/v1/admin/batch", { body: { since_days: 30, k: 5, part_size: 3, max_per_category: 100 } });
    expect(start.status, JSON.stringify(start.body)).toBe(202);
    expect(start.body).toMatchObject({ status: "queued", output: `/v1/admin/batch/${start.body.id}/output` });
    const job = await jobWhen(start.body.id, (j) => j.status === "done");
    expect(job).toMatchObject({ status: "done", parts: Math.ceil(job.users / 3), done_parts: Math.ceil(job.users / 3) });
    const lines = await output(job.id);
    expect(lines).toHaveLength(job.users);
    expect(new Set(lines.map((l) => l.user_id)).size).toBe(job.users);
    const mine = new Map(lines.filter((l) => l.user_id.startsWith("batch-")).map((l) => [l.user_id, l]));
    expect([...mine.keys()].sort()).toEqual([...users].sort());
    for (const u of users) {
      const l = mine.get(u)!;
      expect(l).toMatchObject({ source: "model" });
      expect(l.items).toHaveLength(5);
      // the same list the API serves this user
      const live = await api(`/v1/users/${u}/recommendations?k=5&max_per_category=100`);
      expect(l.items.map((i: any) => i.item_id)).toEqual(live.body.items.map((i: any) => i.item_id));
    }
    expect(mine.get(users[0]!)!.items.map((i: any) => i.item_id)).not.toContain(ids[40]);
  });

  it("resumes a job: a lost part is sent again and written once, done parts are not redone", async () => {
    for (let n = 0; n < 4; n++) await api("/v1/events", { body: ev(uid("resume"), ids[n]!, { event_id: "r" }) });
    await new Promise((res) => setTimeout(res, 500));
    const start = await api("/v1/admin/batch", { body: { since_days: 1, k: 3, part_size: 2 } });
    const job = await jobWhen(start.body.id, (j) => j.status === "done");
    const before = await output(job.id);
    // lose part 0: its object is gone and it is pending again, as if its message ran out of retries
    await (env as unknown as { BATCH_BUCKET: R2Bucket }).BATCH_BUCKET.delete(`batch/${job.id}/part-000000.ndjson`);
    await env.DB.prepare("UPDATE batch_parts SET status = 'pending' WHERE job_id = ?1 AND part = 0").bind(job.id).run();
    await env.DB.prepare("UPDATE batch_jobs SET status = 'running', done_parts = done_parts - 1 WHERE id = ?1").bind(job.id).run();
    const attempts = async () => (await env.DB.prepare("SELECT part, attempts FROM batch_parts WHERE job_id = ?1 ORDER BY part").bind(job.id).all<{ part: number; attempts: number }>()).results;
    const triedBefore = await attempts();
    const resumed = await api(`/v1/admin/batch/${job.id}/resume`, { method: "POST" });
    expect(resumed.body.resent).toBe(1);
    const done = await jobWhen(job.id, (j) => j.status === "done");
    expect(done.done_parts).toBe(done.parts);
    const after = await output(job.id);
    expect(after.map((l) => l.user_id)).toEqual(before.map((l) => l.user_id));
    const triedAfter = await attempts();
    expect(triedAfter[0]!.attempts).toBe(triedBefore[0]!.attempts + 1);
    expect(triedAfter.slice(1)).toEqual(triedBefore.slice(1));
    expect((await api("/v1/admin/batch/nope")).status).toBe(404);
    expect((await api("/v1/admin/batch", { body: { since_days: 0 } })).status).toBe(400);
  });
});
