/**
 * Batch recommendations for every user active in a period (an e-mail campaign): a job lists the
 * users with an event in the period (event log), splits them into parts, and sends one queue
 * message per part. The consumer (runPart) ranks each user of the part with the serving code
 * (recommend: state, rebuild from the log, rules, arrangement), writes the part as NDJSON to R2 and
 * marks it done. Resumable: a part is redone until it is done (queue retries, or resume() sends
 * the pending ones again), a done part is skipped, and a part's R2 object is written whole, so a
 * redone part replaces its own lines and the output never holds a user twice.
 */
import { sql } from "drizzle-orm";
import type { Db } from "../catalog/db";
import type { Recommendation, RecommendDeps, RecommendOptions } from "../domain/recommend";
import { recommend } from "../domain/recommend";

/** One queue message: a part of a job. */
export interface PartMessage {
  job: string;
  part: number;
}

/** Options of every list of a job (k and the request's rules and arrangement). */
export type BatchListOptions = RecommendOptions;

export interface JobSummary {
  id: string;
  status: "queued" | "running" | "done";
  since_ms: number;
  users: number;
  parts: number;
  done_parts: number;
  created_at: number;
  finished_at: number | null;
}

/** Where a part's lines are kept in R2. */
export const partKey = (job: string, part: number) => `batch/${job}/part-${String(part).padStart(6, "0")}.ndjson`;

const USER_PAGE = 10_000;
const INSERT_CHUNK = 20;

/** Users with an event at or after `sinceMs`, in id order. */
export async function activeUsers(db: Db, sinceMs: number): Promise<string[]> {
  const out: string[] = [];
  let after = "";
  for (;;) {
    const rows = await db.all<{ user_id: string }>(
      sql`SELECT DISTINCT user_id FROM events WHERE ts >= ${sinceMs} AND user_id > ${after} ORDER BY user_id LIMIT ${USER_PAGE}`,
    );
    for (const r of rows) out.push(r.user_id);
    if (rows.length < USER_PAGE) return out;
    after = rows[rows.length - 1]!.user_id;
  }
}

/** Create a job and its parts; returns the job and the messages to send. */
export async function createJob(
  db: Db,
  o: { sinceMs: number; partSize: number; options: BatchListOptions; nowMs?: number },
): Promise<{ job: JobSummary; messages: PartMessage[] }> {
  const now = o.nowMs ?? Date.now();
  const users = await activeUsers(db, o.sinceMs);
  const id = `b${new Date(now).toISOString().replace(/[-:T]/g, "").slice(0, 14)}-${crypto.randomUUID().slice(0, 8)}`;
  const parts: string[][] = [];
  for (let i = 0; i < users.length; i += o.partSize) parts.push(users.slice(i, i + o.partSize));
  const status = parts.length ? "queued" : "done";
  const stmts = [
    db.$client
      .prepare("INSERT INTO batch_jobs (id, status, since_ms, options, users, parts, done_parts, created_at, updated_at, finished_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, ?7, ?8)")
      .bind(id, status, o.sinceMs, JSON.stringify(o.options), users.length, parts.length, now, parts.length ? null : now),
  ];
  for (let i = 0; i < parts.length; i += INSERT_CHUNK) {
    const chunk = parts.slice(i, i + INSERT_CHUNK).map((u, j) => ({ part: i + j, users: JSON.stringify(u) }));
    stmts.push(
      db.$client
        .prepare(
          "INSERT INTO batch_parts (job_id, part, users, status, attempts, updated_at) SELECT ?1, json_extract(j.value, '$.part'), json_extract(j.value, '$.users'), 'pending', 0, ?2 FROM json_each(?3) AS j",
        )
        .bind(id, now, JSON.stringify(chunk)),
    );
  }
  await db.$client.batch(stmts);
  const job = (await getJob(db, id))!;
  return { job, messages: parts.map((_, part) => ({ job: id, part })) };
}

interface JobRow {
  id: string;
  status: JobSummary["status"];
  since_ms: number;
  options: string;
  users: number;
  parts: number;
  done_parts: number;
  created_at: number;
  finished_at: number | null;
}

export async function getJob(db: Db, id: string): Promise<JobSummary | null> {
  const r = await db.get<JobRow>(sql`SELECT * FROM batch_jobs WHERE id = ${id}`);
  if (!r) return null;
  return { id: r.id, status: r.status, since_ms: r.since_ms, users: r.users, parts: r.parts, done_parts: r.done_parts, created_at: r.created_at, finished_at: r.finished_at };
}

/** Messages for the parts of a job not done yet (resume). */
export async function pendingParts(db: Db, id: string): Promise<PartMessage[]> {
  const rows = await db.all<{ part: number }>(sql`SELECT part FROM batch_parts WHERE job_id = ${id} AND status != 'done' ORDER BY part`);
  return rows.map((r) => ({ job: id, part: r.part }));
}

/** The R2 keys of a job's written parts, in order. */
export async function doneKeys(db: Db, id: string): Promise<string[]> {
  const rows = await db.all<{ part: number }>(sql`SELECT part FROM batch_parts WHERE job_id = ${id} AND status = 'done' ORDER BY part`);
  return rows.map((r) => partKey(id, r.part));
}

/** One NDJSON line of a user's list. */
function line(userId: string, r: Recommendation): string {
  return JSON.stringify({
    user_id: userId,
    items: r.items.map((i) => ({ item_id: i.item_id, score: i.score, source: i.source })),
    source: r.source,
    ...(r.reason ? { reason: r.reason } : {}),
    model_version: r.model_version,
  });
}

/**
 * Run one part: rank its users, write their lines to R2 whole, mark the part done and the job's
 * progress. Returns false when there was nothing to do (done already, or unknown).
 */
export async function runPart(db: Db, bucket: R2Bucket, deps: RecommendDeps, msg: PartMessage, nowMs = Date.now()): Promise<boolean> {
  const part = await db.get<{ users: string; status: string }>(sql`SELECT users, status FROM batch_parts WHERE job_id = ${msg.job} AND part = ${msg.part}`);
  if (!part || part.status === "done") return false;
  const job = await db.get<{ options: string }>(sql`SELECT options FROM batch_jobs WHERE id = ${msg.job}`);
  if (!job) return false;
  await db.run(sql`UPDATE batch_parts SET attempts = attempts + 1, updated_at = ${nowMs} WHERE job_id = ${msg.job} AND part = ${msg.part}`);
  await db.run(sql`UPDATE batch_jobs SET status = 'running', updated_at = ${nowMs} WHERE id = ${msg.job} AND status = 'queued'`);
  const options = JSON.parse(job.options) as BatchListOptions;
  const users = JSON.parse(part.users) as string[];
  const lines: string[] = [];
  for (const u of users) lines.push(line(u, await recommend(deps, u, options, nowMs)));
  await bucket.put(partKey(msg.job, msg.part), lines.length ? `${lines.join("\n")}\n` : "", { httpMetadata: { contentType: "application/x-ndjson" } });
  const done = Date.now();
  await db.$client.batch([
    db.$client.prepare("UPDATE batch_parts SET status = 'done', written = ?3, updated_at = ?4 WHERE job_id = ?1 AND part = ?2").bind(msg.job, msg.part, lines.length, done),
    db.$client
      .prepare(
        `UPDATE batch_jobs SET done_parts = (SELECT count(*) FROM batch_parts WHERE job_id = ?1 AND status = 'done'), updated_at = ?2,
           status = CASE WHEN (SELECT count(*) FROM batch_parts WHERE job_id = ?1 AND status = 'done') = parts THEN 'done' ELSE 'running' END,
           finished_at = CASE WHEN (SELECT count(*) FROM batch_parts WHERE job_id = ?1 AND status = 'done') = parts THEN ?2 ELSE NULL END
         WHERE id = ?1`,
      )
      .bind(msg.job, done),
  ]);
  return true;
}
