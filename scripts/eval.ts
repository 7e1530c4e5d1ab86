/**
 * `npm run eval -- --dataset <name> [--model models/<folder>] [--max-targets N]`
 *
 * Replays a dataset's test split through an exported model with the serving runtime
 * (onnxruntime-web, the code the worker runs) and computes full-ranking metrics at 20 from the
 * top-20 it returns. Protocols as in models/training/harness.py:
 *   session-next (diginetica, retailrocket): every next item of every test session;
 *   time-split (movielens-latest-small, movielens-100k): each user's last session (idle gap from
 *   the manifest) is test, every event of it a target, predicted from the whole history before it;
 *   last-item (amazon-beauty, amazon-sports): the last item is held out and starts a new session.
 * The last line is exactly `Recall@20=<x> MRR@20=<y> NDCG@20=<z>`.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { compileOrtWasm, readModelFolder } from "../src/model/node-files";
import { GruModel } from "../src/model/runtime";

const argv = process.argv.slice(2);
const opt = (name: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
};
const dataset = opt("dataset") ?? "diginetica";
const DEFAULT_MODEL: Record<string, string> = {
  diginetica: "models/diginetica",
  "movielens-latest-small": "models/ml-small",
};
const modelDir = opt("model") ?? DEFAULT_MODEL[dataset];
if (!modelDir) throw new Error(`no default model for ${dataset}; pass --model models/<folder>`);
const maxTargets = Number(opt("max-targets") ?? Infinity);
const DATA = join(import.meta.dirname, "..", "..", "shared", "data");

/** A user's events: item ids, the session rule's verdicts and gaps, which events are targets. */
interface Seq {
  items: string[];
  newSession: boolean[];
  gapHours: number[];
  target: boolean[];
}

/** Sequences from (user, item, seconds) rows in file order, sessions cut by the idle gap. */
function timeSplit(rows: [string, string, number][], idleGapMs: number): Seq[] {
  const byUser = new Map<string, { item: string; t: number; n: number }[]>();
  rows.forEach(([u, item, t], n) => {
    let l = byUser.get(u);
    if (!l) byUser.set(u, (l = []));
    l.push({ item, t: t * 1000, n });
  });
  const out: Seq[] = [];
  for (const evs of byUser.values()) {
    evs.sort((a, b) => a.t - b.t || a.n - b.n);
    const session: number[] = [];
    evs.forEach((e, i) => session.push(i === 0 ? 0 : session[i - 1]! + (e.t - evs[i - 1]!.t > idleGapMs ? 1 : 0)));
    const last = session[session.length - 1]!;
    out.push({
      items: evs.map((e) => e.item),
      newSession: session.map((s, i) => i === 0 || s !== session[i - 1]),
      gapHours: evs.map((e, i) => (i === 0 ? 0 : (e.t - evs[i - 1]!.t) / 3_600_000)),
      target: session.map((s) => last > 0 && s === last),
    });
  }
  return out;
}

function sessionNext(file: string, tsv: boolean): Seq[] {
  const lines = readFileSync(file, "utf8").split("\n").slice(tsv ? 1 : 0).filter((l) => l.trim());
  return lines.map((l) => {
    const items = (tsv ? l.split("\t")[2]! : l).trim().split(/\s+/);
    return { items, newSession: items.map((_, i) => i === 0), gapHours: items.map((_, i) => (i === 0 ? 0 : 1 / 3600)), target: items.map((_, i) => i > 0) };
  });
}

/** Amazon 5-core: order only. Pseudo-sessions of 5 items; the held-out last item starts a new one. */
function lastItem(file: string): Seq[] {
  return readFileSync(file, "utf8").split("\n").filter((l) => l.trim()).map((l) => {
    const items = l.trim().split(/\s+/).slice(1);
    const n = items.length;
    return {
      items,
      newSession: items.map((_, i) => i % 5 === 0 || i === n - 1),
      gapHours: items.map((_, i) => (i === 0 ? 0 : 1 / 3600)),
      target: items.map((_, i) => i === n - 1),
    };
  });
}

function csvRows(file: string, sep: string, skipHeader: boolean): [string, string, number][] {
  return readFileSync(file, "utf8").split("\n").slice(skipHeader ? 1 : 0).filter((l) => l.trim()).map((l) => {
    const a = l.split(sep);
    return [a[0]!, a[1]!, Number(a[3])];
  });
}

const model = await GruModel.load(await compileOrtWasm(), readModelFolder(modelDir));
const seqs: Seq[] | null =
  dataset === "diginetica" ? sessionNext(join(DATA, "diginetica", "test_sessions.txt"), false)
  : dataset === "retailrocket" ? sessionNext(join(DATA, "retailrocket", "test_sessions.tsv"), true)
  : dataset === "movielens-latest-small" ? timeSplit(csvRows(join(DATA, "movielens-latest-small", "ratings.csv"), ",", true), model.idleGapMs)
  : dataset === "movielens-100k" ? timeSplit(csvRows(join(DATA, "movielens-100k", "u.data"), "\t", false), model.idleGapMs)
  : dataset === "amazon-beauty" ? lastItem(join(DATA, "amazon-beauty", "Beauty.txt"))
  : dataset === "amazon-sports" ? lastItem(join(DATA, "amazon-sports", "Sports_and_Outdoors.txt"))
  : null;
if (!seqs) throw new Error(`eval supports diginetica, retailrocket, movielens-latest-small, movielens-100k, amazon-beauty, amazon-sports; not ${dataset}`);

let targets = 0, hits = 0, rr = 0, ndcg = 0, lost = 0;
const t0 = performance.now();
outer: for (const s of seqs) {
  let state = model.initialState();
  let count = 0;
  let gapSinceKept = 0;
  let pendingNew = false;
  for (let i = 0; i < s.items.length; i++) {
    const row = model.rowOf(s.items[i]!);
    // events of unknown items are skipped as inputs, as in the Python harness: the next kept event
    // starts a session if any skipped one did, and its gap runs from the last kept event
    gapSinceKept += s.gapHours[i]!;
    const at = { newSession: count === 0 || s.newSession[i]! || pendingNew, gapHours: count === 0 ? 0 : gapSinceKept };
    if (s.target[i]) {
      targets++;
      if (row === undefined) lost++;
      else {
        const top = await model.topK(state, at, 20);
        const r = top.findIndex((t) => t.row === row) + 1;
        if (r > 0) {
          hits++;
          rr += 1 / r;
          ndcg += 1 / Math.log2(r + 1);
        }
      }
      if (targets >= maxTargets) break outer;
    }
    if (row !== undefined) {
      state = await model.step(state, row, at);
      count++;
      gapSinceKept = 0;
      pendingNew = false;
    } else if (s.newSession[i]) {
      pendingNew = true;
    }
  }
}
const secs = (performance.now() - t0) / 1000;
console.log(`${dataset}: model ${model.version}, ${targets} targets (${lost} with items unknown to the model, counted as misses), ${secs.toFixed(0)} s, ${(targets / secs).toFixed(0)} targets/s`);
console.log(`Recall@20=${(hits / targets).toFixed(4)} MRR@20=${(rr / targets).toFixed(4)} NDCG@20=${(ndcg / targets).toFixed(4)}`);
