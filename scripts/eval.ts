/**
 * `npm run eval -- --dataset <name> [--model models/<folder>] [--max-targets N]`
 *
 * Replays a dataset's test split through an exported model with the serving runtime
 * (onnxruntime-web, the code the worker runs) and computes full-ranking metrics at 20 from the
 * top-20 it returns. Protocols as in models/training/harness.py:
 *   session-next (diginetica, retailrocket): every next item of every test session;
 *   time-split (movielens-latest-small): each user's last session (idle gap from the manifest)
 *   is test, every event of it a target, predicted from the whole history before it.
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

/** Users' event sequences: item ids, timestamps (ms), whether each event is a target. */
interface Seq {
  items: string[];
  times: number[];
  target: boolean[];
}

function sessionNext(file: string, tsv: boolean): Seq[] {
  const lines = readFileSync(file, "utf8").split("\n").slice(tsv ? 1 : 0).filter((l) => l.trim());
  return lines.map((l) => {
    const items = (tsv ? l.split("\t")[2]! : l).trim().split(/\s+/);
    return { items, times: items.map(() => 0), target: items.map((_, i) => i > 0) };
  });
}

function timeSplit(file: string, idleGapMs: number): Seq[] {
  const byUser = new Map<string, { item: string; t: number; n: number }[]>();
  let n = 0;
  for (const line of readFileSync(file, "utf8").split("\n").slice(1)) {
    const [u, item, , ts] = line.split(",");
    if (!u || !item) continue;
    byUser.set(u, [...(byUser.get(u) ?? []), { item, t: Number(ts) * 1000, n: n++ }]);
  }
  const out: Seq[] = [];
  for (const evs of byUser.values()) {
    evs.sort((a, b) => a.t - b.t || a.n - b.n);
    const session: number[] = [];
    evs.forEach((e, i) => session.push(i === 0 ? 0 : session[i - 1]! + (e.t - evs[i - 1]!.t > idleGapMs ? 1 : 0)));
    const last = session[session.length - 1]!;
    out.push({ items: evs.map((e) => e.item), times: evs.map((e) => e.t), target: session.map((s) => last > 0 && s === last) });
  }
  return out;
}

const model = await GruModel.load(await compileOrtWasm(), readModelFolder(modelDir));
const seqs =
  dataset === "diginetica" ? sessionNext(join(DATA, "diginetica", "test_sessions.txt"), false)
  : dataset === "retailrocket" ? sessionNext(join(DATA, "retailrocket", "test_sessions.tsv"), true)
  : dataset.startsWith("movielens-latest-small") ? timeSplit(join(DATA, "movielens-latest-small", "ratings.csv"), model.idleGapMs)
  : null;
if (!seqs) throw new Error(`eval supports diginetica, retailrocket and movielens-latest-small, not ${dataset}`);

let targets = 0, hits = 0, rr = 0, ndcg = 0, lost = 0;
const t0 = performance.now();
outer: for (const s of seqs) {
  let state = model.initialState();
  let count = 0;
  let last = -Infinity;
  for (let i = 0; i < s.items.length; i++) {
    const row = model.rowOf(s.items[i]!);
    const at = model.moment(s.times[i]!, count === 0 ? undefined : last);
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
      last = s.times[i]!;
    }
  }
}
const secs = (performance.now() - t0) / 1000;
console.log(`${dataset}: model ${model.version}, ${targets} targets (${lost} with items unknown to the model, counted as misses), ${secs.toFixed(0)} s, ${(targets / secs).toFixed(0)} targets/s`);
console.log(`Recall@20=${(hits / targets).toFixed(4)} MRR@20=${(rr / targets).toFixed(4)} NDCG@20=${(ndcg / targets).toFixed(4)}`);
