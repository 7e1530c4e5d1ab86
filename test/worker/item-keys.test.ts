import { describe, expect, it } from "vitest";
import { IdList, readManifestText } from "../../src/model/manifest-ids";
import { ItemKeys, RowKeys } from "../../src/model/item-keys";
import { parseManifest } from "../../src/model/manifest";
import manifestJson from "../../models/ml-small/manifest.json";

const tricky = ["sku-1", "película", "a\"quoted\"", "back\\slash", "tab\there", "😀 emoji", "", "x".repeat(5000), "line\nbreak", "\u0000nul"];

describe("item keys", () => {
  it("gives each id one key, finds it again, spells it back, and answers 0 for an id it never met", () => {
    const keys = new ItemKeys();
    const ids = [...tricky, ...Array.from({ length: 30_000 }, (_, i) => `item-${i}`)];
    const given = ids.map((id) => keys.key(id));
    expect(new Set(given).size).toBe(ids.length);
    expect(keys.size).toBe(ids.length);
    ids.forEach((id, i) => {
      expect(keys.key(id)).toBe(given[i]);
      expect(keys.find(id)).toBe(given[i]);
      expect(keys.id(given[i]!)).toBe(id);
    });
    expect(keys.find("item-30000")).toBe(0);
    expect(keys.find("sku-")).toBe(0);
  });

  it("maps a model's rows to keys and back, sharing the keys the catalog gave first", () => {
    const keys = new ItemKeys();
    const catalogKey = keys.key("b");
    const rows = new RowKeys(["a", "b", "c"], keys);
    expect(rows.rowKey[2]).toBe(catalogKey);
    expect([rows.rowOf("a"), rows.rowOf("b"), rows.rowOf("c"), rows.rowOf("d")]).toEqual([1, 2, 3, undefined]);
    expect([rows.idOf(1), rows.idOf(2), rows.idOf(3)]).toEqual(["a", "b", "c"]);
    keys.key("d"); // met after the model was indexed: still not one of its rows
    expect(rows.rowOf("d")).toBeUndefined();
    expect(keys.size).toBe(4);
    expect([1, 2, 3, 4].map((k) => rows.hasKey(k))).toEqual([true, true, true, false]);
    expect(rows.hasKey(0)).toBe(false);
  });

  it("orders keys by their ids exactly as strings order, without building them", () => {
    const keys = new ItemKeys();
    const ids = ["b", "a", "ab", "", "B", "a\u0000", "\u00e9", "\ud83d\ude00", "\uffff", "abc", "abd", "10", "9"];
    const ks = ids.map((id) => keys.key(id));
    const byKeys = [...ks].sort((x, y) => keys.compare(x, y)).map((k) => keys.id(k));
    expect(byKeys).toEqual([...ids].sort());
  });

  it("refuses a model whose ids repeat, naming the id", () => {
    expect(() => new RowKeys(["a", "b", "a"], new ItemKeys())).toThrow(/"a" appears twice/);
  });
});

describe("manifest ids left in the text", () => {
  it("reads every id as JSON.parse does, escapes and all, and everything else unchanged", () => {
    const m = { ...manifestJson, items: { ...manifestJson.items, ids: [...tricky, ...manifestJson.items.ids.slice(tricky.length)] } };
    for (const text of [JSON.stringify(m), JSON.stringify(m, null, 1), JSON.stringify(m, null, "\t")]) {
      const read = readManifestText(text) as typeof m & { items: { ids: IdList } };
      expect(read.items.ids).toBeInstanceOf(IdList);
      expect(read.items.ids.length).toBe(m.items.ids.length);
      expect([...read.items.ids]).toEqual(m.items.ids);
      const { ids: _, ...items } = read.items;
      expect({ ...read, items }).toEqual({ ...JSON.parse(text), items: { ...m.items, ids: undefined } });
      expect(parseManifest(read).items.rows).toBe(m.items.rows);
      // Served as it was uploaded (GET /v1/device/model/.../manifest.json stringifies it).
      expect(JSON.parse(JSON.stringify(read))).toEqual(JSON.parse(text));
    }
  });

  it("leaves a manifest whose ids are not all strings to parseManifest, which names the problem", () => {
    const bad = JSON.stringify({ ...manifestJson, items: { ...manifestJson.items, ids: [1, ...manifestJson.items.ids.slice(1)] } });
    expect(Array.isArray((readManifestText(bad) as typeof manifestJson).items.ids)).toBe(true);
    expect(() => parseManifest(readManifestText(bad))).toThrow(/manifest\.items\.ids/);
    expect(() => readManifestText("{not json")).toThrow(SyntaxError);
  });
});
