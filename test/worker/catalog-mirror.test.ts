/**
 * The isolate's catalog copy (src/catalog/mirror.ts) keeps its facts in columns: what goes in comes
 * out the same through every read, across updates, deletions and reused slots.
 */
import { describe, expect, it } from "vitest";
import { CatalogMirror, type ItemFacts } from "../../src/catalog/mirror";

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
});
