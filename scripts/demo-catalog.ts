/**
 * The demo shop's catalog for `npm start`: every item the bundled model knows (MovieLens movie
 * ids, titles from models/ml-small/titles.json), filed under "Movies > <decade>" with a made-up
 * price, one in twenty sold out, arrived on 2026-01-01, plus three new arrivals the model has
 * never seen (arriving when first loaded: the model ranks them with their decade's warm-start row;
 * `explore` and `new:` boosts find them). Deterministic, so restarting loads the same catalog.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "../local/stack.ts";

export interface DemoItem {
  id: string;
  title: string;
  category_path: string[];
  price: number;
  currency: string;
  available: boolean;
  url: string;
  attributes: Record<string, unknown>;
  /** Arrival in the shop (absent: when first stored). */
  created_at?: string;
}

/** Small deterministic hash of an id (FNV-1a). */
function hash(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

export function demoCatalog(): DemoItem[] {
  const dir = join(ROOT, "models", "ml-small");
  const manifest = JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8")) as { items: { ids: string[] } };
  const titles = JSON.parse(readFileSync(join(dir, "titles.json"), "utf8")) as Record<string, string>;
  const items: DemoItem[] = manifest.items.ids.map((id) => {
    const title = titles[id] ?? `Movie ${id}`;
    const year = Number(/\((\d{4})\)\s*$/.exec(title)?.[1] ?? 0);
    const decade = year ? `${Math.floor(year / 10) * 10}s` : "Undated";
    const h = hash(id);
    return {
      id,
      title,
      category_path: ["Movies", decade],
      price: 4.99 + (h % 16),
      currency: "EUR",
      available: h % 20 !== 7,
      url: `https://shop.example/movies/${id}`,
      attributes: year ? { year } : {},
      created_at: "2026-01-01T00:00:00.000Z",
    };
  });
  for (const [n, title] of ["Demo New Arrival A", "Demo New Arrival B", "Demo New Arrival C"].entries()) {
    items.push({ id: `new-${n + 1}`, title, category_path: ["Movies", "2020s"], price: 19.99, currency: "EUR", available: true, url: `https://shop.example/movies/new-${n + 1}`, attributes: { year: 2026 } });
  }
  return items;
}
