/**
 * Reading the benchmark data the replay scripts share (scripts/eval.ts, scripts/eval-arrange.ts):
 * rating rows and the time-split protocol of models/training/harness.py.
 */
import { readFileSync } from "node:fs";

/** A user's events: item ids, times, the session rule's verdicts and gaps, which events are targets. */
export interface Seq {
  items: string[];
  /** Each event's time, ms. */
  ms: number[];
  newSession: boolean[];
  gapHours: number[];
  target: boolean[];
}

/** (user, item, seconds) rows of a delimited file (columns 0, 1, 3). */
export function csvRows(file: string, sep = ",", skipHeader = true): [string, string, number][] {
  return readFileSync(file, "utf8").split("\n").slice(skipHeader ? 1 : 0).filter((l) => l.trim()).map((l) => {
    const a = l.split(sep);
    return [a[0]!, a[1]!, Number(a[3])];
  });
}

/**
 * Time-split sequences from (user, item, seconds) rows in file order, sessions cut by the idle
 * gap; each user's last session is test (its events are targets) when the user has an earlier one.
 */
export function timeSplit(rows: [string, string, number][], idleGapMs: number): Seq[] {
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
      ms: evs.map((e) => e.t),
      newSession: session.map((s, i) => i === 0 || s !== session[i - 1]),
      gapHours: evs.map((e, i) => (i === 0 ? 0 : (e.t - evs[i - 1]!.t) / 3_600_000)),
      target: session.map((s) => last > 0 && s === last),
    });
  }
  return out;
}
