/**
 * Parity: the worker's runtime (onnxruntime-web in workerd) reproduces the golden vectors that
 * the Python export computed with PyTorch.
 */
import { describe, expect, it } from "vitest";
import golden from "../../models/ml-small/golden.json";
import manifestJson from "../../models/ml-small/manifest.json";
import { modelHandle } from "../../src/model/registry";
import { parseManifest } from "../../src/model/manifest";
import { sameTopK, similarTolerance } from "../../scripts/parity-tolerance";

async function model() {
  const r = await modelHandle("ml-small").get();
  if (!r.ok) throw new Error(r.message);
  return r.model;
}

describe("model parity with the PyTorch export", () => {
  it("applies the manifest's session rule exactly as the export did", async () => {
    const m = await model();
    golden.events.forEach((e, i) => {
      const at = m.moment(e.timestamp, i === 0 ? undefined : golden.events[i - 1]!.timestamp);
      expect(at.newSession).toBe(golden.new_session[i] === 1);
      expect(Math.abs(at.gapHours - golden.gap_hours[i]!)).toBeLessThan(1e-6);
    });
  });

  it("reproduces the state after every event within 1e-4", async () => {
    const m = await model();
    let state = m.initialState();
    for (let i = 0; i < golden.events.length; i++) {
      const row = m.rowOf(golden.events[i]!.item_id)!;
      const at = m.moment(golden.events[i]!.timestamp, i === 0 ? undefined : golden.events[i - 1]!.timestamp);
      expect(at.newSession).toBe(golden.new_session[i] === 1);
      expect(Math.abs(at.gapHours - golden.gap_hours[i]!)).toBeLessThan(1e-6);
      state = await m.step(state, row, at);
      const want = golden.states[i]!;
      let worst = 0;
      for (let j = 0; j < want.length; j++) worst = Math.max(worst, Math.abs(state[j]! - want[j]!));
      expect(worst, `event ${i}`).toBeLessThan(golden.tolerance);
    }
  });

  it("reproduces the top-k items and scores (same session, new session, seen items excluded)", async () => {
    const m = await model();
    let state = m.initialState();
    for (let i = 0; i < golden.events.length; i++) {
      state = await m.step(state, m.rowOf(golden.events[i]!.item_id)!, { newSession: golden.new_session[i] === 1, gapHours: golden.gap_hours[i]! });
    }
    const seen = golden.events.map((e) => m.rowOf(e.item_id)!);
    for (const [name, g] of Object.entries(golden.topk)) {
      const top = await m.topK(state, { newSession: g.new_session === 1, gapHours: g.gap_hours }, golden.k, g.exclude_seen ? seen : []);
      expect(top.map((t) => m.idOf(t.row)), name).toEqual(g.item_ids);
      top.forEach((t, j) => expect(Math.abs(t.score - g.scores[j]!), `${name}[${j}]`).toBeLessThan(golden.tolerance));
    }
  });

  it("reproduces the similar items of the golden item, itself excluded", async () => {
    const m = await model();
    expect(m.hasSimilar).toBe(true);
    const top = await m.similar(m.rowOf(golden.similar.item_id)!, golden.k);
    // fp16 exports store the normalized table as float16: see scripts/parity-tolerance.ts
    const tol = similarTolerance(manifestJson.weights.dtype, golden.tolerance);
    const ids = top.map((t) => m.idOf(t.row));
    expect(sameTopK(golden.similar.item_ids, golden.similar.scores, ids, top.map((t) => t.score), tol), `${ids}`).toBe(true);
    top.forEach((t, j) => expect(Math.abs(t.score - golden.similar.scores[j]!)).toBeLessThanOrEqual(tol));
  });

  it("never returns an excluded item or the padding row, even when k exceeds what is left", async () => {
    const m = await model();
    const exclude = Array.from({ length: m.rows - 4 }, (_, i) => i + 1); // leave 3 items
    const top = await m.topK(m.initialState(), { newSession: true, gapHours: 0 }, 10, exclude);
    expect(top.length).toBe(3);
    for (const t of top) expect(exclude.includes(t.row) || t.row === 0).toBe(false);
  });

  it("refuses a manifest that disagrees with itself, with a message naming the field", () => {
    const bad = structuredClone(manifestJson) as any;
    bad.state.size = 64;
    expect(() => parseManifest(bad)).toThrow(new RegExp(`state\\.layout covers ${manifestJson.state.size} floats, state\\.size is 64`));
    const bad2 = structuredClone(manifestJson) as any;
    bad2.items.ids.pop();
    expect(() => parseManifest(bad2)).toThrow(/items\.ids has/);
    const bad3 = structuredClone(manifestJson) as any;
    bad3.graphs.score.inputs[3].name = "filter";
    expect(() => parseManifest(bad3)).toThrow(/graphs\.score/);
  });
});
