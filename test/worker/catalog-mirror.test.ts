/**
 * The isolate's catalog copy (src/catalog/mirror.ts) keeps its facts in columns: what goes in comes
 * out the same through every read, across updates, deletions and reused slots.
 */
import { describe, expect, it } from "vitest";
import { CatalogMirror, type ItemFacts } from "../../src/catalog/mirror";
import { inCategory } from "../../src/catalog/schemas";
import { RowKeys } from "../../src/model/item-keys";
import type { GruModel } from "../../src/model/runtime";

const facts = (o: Partial<ItemFacts> = {}): ItemFacts => ({ available: true, price: 10, categoryKey: "A > B", createdMs: 1000, ...o });

describe("the catalog copy in columns", () => {
  it("answers each item's facts as written, after updates, deletions and reused slots", () => {
    const m = new CatalogMirror();
    const want = new Map<string, ItemFacts>();
    let seed = 7;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (let step = 0; step < 5000; step++) {
      const id = `i${Math.floor(rnd() * 700)}`;
      if (rnd() < 0.25) {
        m.note(id, null);
        want.delete(id);
      } else {
        const f = facts({
          available: rnd() < 0.8,
          price: rnd() < 0.1 ? Number.NaN : Math.round(rnd() * 1000) / 10,
          categoryKey: `C${Math.floor(rnd() * 30)} > L${Math.floor(rnd() * 5)}`,
          createdMs: Math.floor(rnd() * 1e6),
          ...(rnd() < 0.3 ? { attrs: { color: rnd() < 0.5 ? "red" : "blue", size: Math.floor(rnd() * 5) } } : {}),
        });
        m.note(id, f);
        want.set(id, f);
      }
    }
    expect(m.size).toBe(want.size);
    expect(new Set(m.ids())).toEqual(new Set(want.keys()));
    for (const [id, f] of want) expect(m.get(id)).toEqual(f);
    for (let i = 0; i < 700; i++) if (!want.has(`i${i}`)) expect(m.get(`i${i}`)).toBeUndefined();
    const newest = [...want.entries()].sort((a, b) => b[1].createdMs - a[1].createdMs || (a[0] < b[0] ? -1 : 1)).map(([id]) => id);
    const since = want.size ? [...want.values()].map((f) => f.createdMs).sort((a, b) => b - a)[Math.floor(want.size / 3)]! : 0;
    expect(m.arrivedSince(since)).toEqual(newest.filter((id) => want.get(id)!.createdMs >= since));
  });

  it("drops an item's attributes when an update has none", () => {
    const m = new CatalogMirror();
    m.note("a", facts({ attrs: { brand: "x" } }));
    m.note("a", facts());
    expect(m.get("a")!.attrs).toBeUndefined();
    expect(m.restricts).toBe(true);
  });

  it("gives a model's rows the catalog's availability, category and price rules, asked twice, across catalog changes", () => {
    const m = new CatalogMirror();
    const ids = Array.from({ length: 300 }, (_, i) => `row-${i}`);
    const model = new RowKeys(ids);
    const served = { rows: ids.length + 1, rowKeys: model.rowKey } as unknown as GruModel;
    let seed = 11;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const expected = (rules: { category?: string; minPrice?: number; maxPrice?: number }) =>
      ids.map((id) => {
        const f = m.get(id);
        if (!f || !f.available) return 1;
        if (rules.category !== undefined && !inCategory(f.categoryKey, rules.category)) return 1;
        const priced = rules.minPrice !== undefined || rules.maxPrice !== undefined;
        if (priced && !(f.price >= (rules.minPrice ?? -Infinity) && f.price <= (rules.maxPrice ?? Infinity))) return 1;
        return 0;
      });
    for (let round = 0; round < 4; round++) {
      // Some rows' items change, leave the catalog or never enter it.
      for (const id of ids) {
        const x = rnd();
        if (x < 0.1) m.note(id, null);
        else if (x < 0.6 || round === 0) m.note(id, facts({ available: rnd() < 0.8, price: rnd() < 0.1 ? Number.NaN : Math.round(rnd() * 100), categoryKey: `C${Math.floor(rnd() * 4)} > L${Math.floor(rnd() * 3)}` }));
      }
      const view = m.rowView(served);
      expect(Array.from(view.mask.toFloats().subarray(1))).toEqual(expected({}));
      for (const rules of [{ category: "C1" }, { category: "C2 > L1" }, { category: "C1" }, { minPrice: 20, maxPrice: 60 }, { category: "C3", maxPrice: 50 }, { category: "C2 > L1" }]) {
        const mask = view.mask.copy();
        view.restrict(mask, rules);
        expect(Array.from(mask.toFloats().subarray(1)), JSON.stringify(rules)).toEqual(expected(rules));
      }
    }
  });
});
