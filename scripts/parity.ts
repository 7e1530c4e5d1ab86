/**
 * Check an exported model folder against its golden vectors with the serving runtime
 * (onnxruntime-web, the code the worker runs):  npx tsx scripts/parity.ts models/ml-small
 * Prints the worst differences; exits 1 when a state or score differs by more than the
 * tolerance or a top-k list differs. The similar graph of an fp16 export gets the wider tolerance
 * of parity-tolerance.ts (its normalized table is stored as float16), and its top-k may swap
 * items whose golden cosines lie within that tolerance.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { loadModelFolder } from "../src/model/node-files";
import { sameTopK, similarTolerance } from "./parity-tolerance";

const dir = process.argv[2] ?? "models/ml-small";
const golden = JSON.parse(readFileSync(join(dir, "golden.json"), "utf8"));
const model = await loadModelFolder(dir);
let state = model.initialState();
let worstState = 0;
for (let i = 0; i < golden.events.length; i++) {
  const row = model.rowOf(golden.events[i].item_id);
  if (row === undefined) throw new Error(`golden item ${golden.events[i].item_id} not in the manifest`);
  state = await model.step(state, row, { newSession: golden.new_session[i] === 1, gapHours: golden.gap_hours[i] });
  golden.states[i].forEach((v: number, j: number) => (worstState = Math.max(worstState, Math.abs(v - state[j]!))));
}
const seen = golden.events.map((e: { item_id: string }) => model.rowOf(e.item_id)!);
let worstScore = 0;
let worstSimilar = 0;
let topkOk = true;
for (const [name, g] of Object.entries<any>(golden.topk)) {
  const top = await model.topK(state, { newSession: g.new_session === 1, gapHours: g.gap_hours }, golden.k, g.exclude_seen ? seen : []);
  const ids = top.map((t) => model.idOf(t.row));
  if (JSON.stringify(ids) !== JSON.stringify(g.item_ids)) {
    topkOk = false;
    console.log(`${name}: top-k differs\n  torch: ${g.item_ids}\n  ort:   ${ids}`);
  }
  top.forEach((t, j) => (worstScore = Math.max(worstScore, Math.abs(t.score - g.scores[j]))));
}
const manifest = JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8"));
const simTol = similarTolerance(manifest.weights?.dtype, golden.tolerance);
if (golden.similar && model.hasSimilar) {
  const g = golden.similar;
  const top = await model.similar(model.rowOf(g.item_id)!, golden.k);
  const ids = top.map((t) => model.idOf(t.row));
  if (!sameTopK(g.item_ids, g.scores, ids, top.map((t) => t.score), simTol)) {
    topkOk = false;
    console.log(`similar: top-k differs\n  torch: ${g.item_ids}\n  ort:   ${ids}`);
  }
  top.forEach((t, j) => (worstSimilar = Math.max(worstSimilar, Math.abs(t.score - g.scores[j]))));
}
const ok = worstState <= golden.tolerance && worstScore <= golden.tolerance && worstSimilar <= simTol && topkOk;
console.log(JSON.stringify({ model: model.version, events: golden.events.length, max_state_diff: worstState, max_score_diff: worstScore, max_similar_diff: worstSimilar, topk_identical: topkOk, tolerance: golden.tolerance, similar_tolerance: simTol, ok }));
process.exit(ok ? 0 : 1);
