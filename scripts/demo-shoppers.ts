/**
 * The demo shop's returning shoppers for `npm start`: twelve shoppers (`demo-shopper-01` ..
 * `-12`), each a fan of one decade, with two sessions of views (ten and three days ago) and one
 * purchase, so the console, the popularity lists and `npm run batch -- --since-days 30` have
 * someone to show. Deterministic ids and event ids; sent once (start.ts checks first).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "../local/stack.ts";
import { demoCatalog } from "./demo-catalog.ts";

export const DEMO_SHOPPERS = 12;
export const shopperId = (n: number) => `demo-shopper-${String(n + 1).padStart(2, "0")}`;

interface DemoEvent {
  event_id: string;
  user_id: string;
  item_id: string;
  type: "view" | "purchase";
  timestamp: number;
}

/** Every demo shopper's events, oldest first, timed relative to `nowMs`. */
export function demoShopperEvents(nowMs: number): DemoEvent[] {
  const popular = (JSON.parse(readFileSync(join(ROOT, "models", "ml-small", "manifest.json"), "utf8")) as { popular: { ids: string[] } }).popular.ids;
  const catalog = new Map(demoCatalog().map((i) => [i.id, i]));
  const decades = ["1970s", "1980s", "1990s", "2000s"];
  const events: DemoEvent[] = [];
  for (let n = 0; n < DEMO_SHOPPERS; n++) {
    const user = shopperId(n);
    const decade = decades[n % decades.length]!;
    // Their decade's popular, available films, each shopper from a different offset.
    const films = popular.filter((id) => catalog.get(id)?.category_path[1] === decade && catalog.get(id)?.available).slice(Math.floor(n / decades.length) * 4, Math.floor(n / decades.length) * 4 + 12);
    const sessions: [number, string[]][] = [
      [10, films.slice(0, 6)],
      [3, films.slice(6, 12)],
    ];
    let seq = 0;
    for (const [daysAgo, ids] of sessions) {
      ids.forEach((item, j) => {
        events.push({ event_id: `demo-${seq++}`, user_id: user, item_id: item, type: "view", timestamp: nowMs - daysAgo * 86_400_000 + j * 60_000 });
      });
    }
    const bought = films[7];
    if (bought) events.push({ event_id: `demo-${seq++}`, user_id: user, item_id: bought, type: "purchase", timestamp: nowMs - 3 * 86_400_000 + 30 * 60_000 });
  }
  return events;
}
