/**
 * `npm run eval -- --dataset <name> [--model models/<folder>] [--max-targets N] [--cap N]`
 *
 * Replays a dataset's test split through an exported model with the serving runtime
 * (onnxruntime-web, the code the worker runs) and computes full-ranking metrics at 20 from the
 * top-20 it returns. Protocols exactly as models/training/harness.py:
 *   session-next (diginetica, retailrocket): every next item of every test session, nothing masked;
 *   time-split (movielens-latest-small, movielens-100k): each user's last session (idle gap from
 *   the manifest) is test, every event of it a target, predicted from the whole history before it,
 *   nothing masked;
 *   last-item (amazon-beauty, amazon-sports): S3-Rec / ICLRec: one continuous sequence per user,
 *   the last item is the target, every earlier item of the user is left out of the ranking (as the
 *   papers score their full ranking); `--cap N` (default: the manifest's training.args.cap, else
 *   none) feeds only the last N items before the target, as those papers do with 50.
 * It also prints the served figure: the same replay under the API's default rules (nothing but
 * purchases left out: recent items are shown unless `exclude_recent=true`, src/domain/recommend.ts;
 * no purchases occur in these data). Time-split also replays memory against session-only with
 * `exclude_seen=true` (the state's seen filter, src/state/seen.ts, left out; a system without
 * memory resets state and filter at every session start). The last line is the protocol's figure, exactly
 * `Recall@20=<x> MRR@20=<y> NDCG@20=<z>`.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { type Seq, csvRows, timeSplit } from "./replay-data.ts";
import { loadModelFolder } from "../src/model/node-files";
import { RowMask } from "../src/model/row-mask";
import { emptySeen, maskSeenRows, rowPositions, seenAdd } from "../src/state/seen";

const argv = process.argv.slice(2);
const opt = (name: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
};
const dataset = opt("dataset") ?? "diginetica";
/** The committed benchmark model of each dataset (models/<folder>). */
const DEFAULT_MODEL: Record<string, string> = {
  diginetica: "models/diginetica",
  retailrocket: "models/retailrocket",
  "amazon-beauty": "models/amazon-beauty",
  "amazon-sports": "models/amazon-sports",
  "movielens-latest-small": "models/ml-small",
  "movielens-100k": "models/ml-100k",
};
const modelDir = opt("model") ?? DEFAULT_MODEL[dataset];
if (!modelDir) throw new Error(`no default model for ${dataset}; pass --model models/<folder>`);
const maxTargets = Number(opt("max-targets") ?? Infinity);
const DATA = join(import.meta.dirname, "..", "..", "shared", "data");

/** What a protocol leaves out of the ranking before a target, from the user's earlier rows. */
type Rule = "none" | "history" | "recent20";
const RING = 20;

/** Rows `rule` leaves out after `prefix` (oldest first), as harness.py `excluded`. */
function excluded(rule: Rule, prefix: number[]): number[] {
  if (rule === "none") return [];
  if (rule === "history") return prefix;
  const out: number[] = [];
  for (let i = prefix.length - 1; i >= 0 && out.length < RING; i--) if (!out.includes(prefix[i]!)) out.push(prefix[i]!);
  return out;
}

function sessionNext(file: string, tsv: boolean): Seq[] {
  const lines = readFileSync(file, "utf8").split("\n").slice(tsv ? 1 : 0).filter((l) => l.trim());
  return lines.map((l) => {
    const items = (tsv ? l.split("\t")[2]! : l).trim().split(/\s+/);
    return { items, ms: items.map((_, i) => i * 1000), newSession: items.map((_, i) => i === 0), gapHours: items.map((_, i) => (i === 0 ? 0 : 1 / 3600)), target: items.map((_, i) => i > 0) };
  });
}

/** Amazon 5-core: order only, one continuous sequence per user (a new session only at its first
 * event, 1 s between events as the harness's position-as-time); the last item is the target. */
function lastItem(file: string): Seq[] {
  return readFileSync(file, "utf8").split("\n").filter((l) => l.trim()).map((l) => {
    const items = l.trim().split(/\s+/).slice(1);
    const n = items.length;
    return {
      items,
      ms: items.map((_, i) => i * 1000),
      newSession: items.map((_, i) => i === 0),
      gapHours: items.map((_, i) => (i === 0 ? 0 : 1 / 3600)),
      target: items.map((_, i) => i === n - 1),
    };
  });
}


const model = await loadModelFolder(modelDir);
const seqs: Seq[] | null =
  dataset === "diginetica" ? sessionNext(join(DATA, "diginetica", "test_sessions.txt"), false)
  : dataset === "retailrocket" ? sessionNext(join(DATA, "retailrocket", "test_sessions.tsv"), true)
  : dataset === "movielens-latest-small" ? timeSplit(csvRows(join(DATA, "movielens-latest-small", "ratings.csv"), ",", true), model.idleGapMs)
  : dataset === "movielens-100k" ? timeSplit(csvRows(join(DATA, "movielens-100k", "u.data"), "\t", false), model.idleGapMs)
  : dataset === "amazon-beauty" ? lastItem(join(DATA, "amazon-beauty", "Beauty.txt"))
  : dataset === "amazon-sports" ? lastItem(join(DATA, "amazon-sports", "Sports_and_Outdoors.txt"))
  : null;
if (!seqs) throw new Error(`eval supports diginetica, retailrocket, movielens-latest-small, movielens-100k, amazon-beauty, amazon-sports; not ${dataset}`);

const protocolRule: Rule = dataset.startsWith("amazon") ? "history" : "none";
const training = (model.manifest.training ?? {}) as { args?: { cap?: number } };
const cap = Number(opt("cap") ?? training.args?.cap ?? 0);

/** Hits, reciprocal ranks and NDCG gains at 20 under one rule. */
class Tally {
  hits = 0;
  rr = 0;
  ndcg = 0;
  add(top: { row: number }[], row: number) {
    const r = top.findIndex((t) => t.row === row) + 1;
    if (r > 0) {
      this.hits++;
      this.rr += 1 / r;
      this.ndcg += 1 / Math.log2(r + 1);
    }
  }
  line(n: number) {
    return `Recall@20=${(this.hits / n).toFixed(4)} MRR@20=${(this.rr / n).toFixed(4)} NDCG@20=${(this.ndcg / n).toFixed(4)}`;
  }
}

const proto = new Tally();
const served = new Tally();
/** Time-split: exclude_seen=true with memory, and a system without memory (reset at every session start). */
const timeSplitProto = dataset.startsWith("movielens");
const seenMemory = new Tally();
const seenSessionOnly = new Tally();
const positions = timeSplitProto ? rowPositions(model) : new Uint16Array(0);
const seenRows = (f: ReturnType<typeof emptySeen>) => {
  const mask = new RowMask(model.rows);
  maskSeenRows(f, positions, mask);
  const out: number[] = [];
  for (let r = 1; r < model.rows; r++) if (mask.has(r)) out.push(r);
  return out;
};
let targets = 0, lost = 0;
const t0 = performance.now();
outer: for (const s of seqs) {
  // last-item with a cap: the input is only the last `cap` events before the (single) target
  const firstInput = cap > 0 && protocolRule === "history" ? Math.max(0, s.target.indexOf(true) - cap) : 0;
  let state = model.initialState();
  let count = 0;
  let gapSinceKept = 0;
  let pendingNew = false;
  const seen: number[] = [];
  let filter = emptySeen();
  let soState = model.initialState();
  let soFilter = emptySeen();
  for (let i = firstInput; i < s.items.length; i++) {
    const row = model.rowOf(s.items[i]!);
    // events of unknown items are skipped as inputs, as in the Python harness: the next kept event
    // starts a session if any skipped one did, and its gap runs from the last kept event
    gapSinceKept += i === firstInput ? 0 : s.gapHours[i]!;
    const at = { newSession: count === 0 || s.newSession[i]! || pendingNew, gapHours: count === 0 ? 0 : gapSinceKept };
    if (timeSplitProto && at.newSession) {
      soState = model.initialState();
      soFilter = emptySeen();
    }
    if (s.target[i]) {
      targets++;
      if (row === undefined) lost++;
      else {
        proto.add(await model.topK(state, at, 20, excluded(protocolRule, seen)), row);
        served.add(await model.topK(state, at, 20, excluded("none", seen)), row);
        if (timeSplitProto) {
          seenMemory.add(await model.topK(state, at, 20, seenRows(filter)), row);
          seenSessionOnly.add(await model.topK(soState, at, 20, seenRows(soFilter)), row);
        }
      }
      if (targets >= maxTargets) break outer;
    }
    if (row !== undefined) {
      state = await model.step(state, row, at);
      seen.push(row);
      if (timeSplitProto) {
        soState = await model.step(soState, row, at);
        seenAdd(filter, s.items[i]!);
        seenAdd(soFilter, s.items[i]!);
      }
      count++;
      gapSinceKept = 0;
      pendingNew = false;
    } else if (s.newSession[i]) {
      pendingNew = true;
    }
  }
}
const secs = (performance.now() - t0) / 1000;
const left = protocolRule === "history" ? "the user's earlier items left out" : "nothing left out";
console.log(`${dataset}: model ${model.version}, ${targets} targets (${lost} with items unknown to the model, counted as misses)${cap ? `, input capped at ${cap}` : ""}, ${secs.toFixed(0)} s, ${(targets / secs).toFixed(0)} targets/s`);
console.log(`served (API default: recent items shown, exclude_recent=false): ${served.line(targets)}`);
if (timeSplitProto) {
  console.log(`exclude_seen=true, memory (seen filter over all sessions): ${seenMemory.line(targets)}`);
  console.log(`exclude_seen=true, session-only (state and filter reset at every session start): ${seenSessionOnly.line(targets)}`);
}
console.log(`protocol (${left}):`);
console.log(proto.line(targets));
