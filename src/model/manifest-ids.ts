/**
 * Reading a manifest.json without making a string of every item id (issue 18): a million-item
 * manifest is ~14 MB of text, and JSON.parse turns its `items.ids` into a million strings and an
 * array of them (about 30 MiB of JS heap while the model loads). `readManifestText` parses
 * everything else and leaves the ids in the text, as an `IdList` that the model's row keys
 * (item-keys.ts) read one id at a time; nothing keeps the list once the model has loaded.
 */

/** The item ids of a manifest, left in its text: `length` and iteration, as an array of them. */
export class IdList {
  /** How many ids. */
  readonly length: number;

  /** `text[lo, hi)` is the JSON array of ids (`[` to `]`). Throws a SyntaxError on anything but strings. */
  constructor(
    private readonly text: string,
    private readonly lo: number,
    private readonly hi: number,
  ) {
    let n = 0;
    for (const _ of this) n++;
    this.length = n;
  }

  /** The ids as an array (JSON.stringify of a manifest read this way gives the manifest back). */
  toJSON(): string[] {
    return [...this];
  }

  *[Symbol.iterator](): IterableIterator<string> {
    const t = this.text;
    let i = skipSpace(t, this.lo + 1);
    if (t.charCodeAt(i) === 93 /* ] */) return;
    for (;;) {
      if (t.charCodeAt(i) !== 34 /* " */) throw new SyntaxError(`manifest.items.ids: expected a string at character ${i}`);
      let end = i + 1;
      let escaped = false;
      for (let c = t.charCodeAt(end); c !== 34; c = t.charCodeAt(end)) {
        if (Number.isNaN(c)) throw new SyntaxError("manifest.items.ids: unterminated string");
        if (c === 92 /* \ */) {
          escaped = true;
          end++;
        }
        end++;
      }
      yield escaped ? (JSON.parse(t.slice(i, end + 1)) as string) : t.slice(i + 1, end);
      i = skipSpace(t, end + 1);
      const c = t.charCodeAt(i);
      if (c === 93 /* ] */) return;
      if (c !== 44 /* , */) throw new SyntaxError(`manifest.items.ids: expected , or ] at character ${i}`);
      i = skipSpace(t, i + 1);
    }
  }
}

const isSpace = (c: number) => c === 32 || c === 10 || c === 13 || c === 9;

function skipSpace(t: string, i: number): number {
  while (i < t.length && isSpace(t.charCodeAt(i))) i++;
  return i;
}

/** The index of the closing quote of the string opening at `i`. */
function stringEnd(t: string, i: number): number {
  for (let j = i + 1; j < t.length; j++) {
    const c = t.charCodeAt(j);
    if (c === 92 /* \ */) j++;
    else if (c === 34) return j;
  }
  throw new SyntaxError("unterminated string");
}

/** The index just past the JSON value starting at `i` (its syntax is left to JSON.parse). */
function valueEnd(t: string, i: number): number {
  const c = t.charCodeAt(i);
  if (c === 34) return stringEnd(t, i) + 1;
  if (c !== 123 /* { */ && c !== 91 /* [ */) {
    while (i < t.length && !",}] \n\r\t".includes(t[i]!)) i++;
    return i;
  }
  let depth = 0;
  for (let j = i; j < t.length; j++) {
    const d = t.charCodeAt(j);
    if (d === 34) j = stringEnd(t, j);
    else if (d === 123 || d === 91) depth++;
    else if (d === 125 || d === 93) {
      if (--depth === 0) return j + 1;
    }
  }
  throw new SyntaxError("unterminated value");
}

/** The span [start, end) of member `key`'s value in the object starting at `i`, or undefined. */
function member(t: string, i: number, key: string): [number, number] | undefined {
  if (t.charCodeAt(i) !== 123) return undefined;
  i = skipSpace(t, i + 1);
  while (t.charCodeAt(i) === 34) {
    const kEnd = stringEnd(t, i);
    const name = t.slice(i + 1, kEnd);
    i = skipSpace(t, kEnd + 1);
    if (t.charCodeAt(i) !== 58 /* : */) return undefined;
    const v = skipSpace(t, i + 1);
    const end = valueEnd(t, v);
    if (name === key) return [v, end];
    i = skipSpace(t, end);
    if (t.charCodeAt(i) !== 44) return undefined;
    i = skipSpace(t, i + 1);
  }
  return undefined;
}

/**
 * manifest.json's text parsed, its `items.ids` an IdList over the text (when the text has them as a
 * plain array of strings; anything else is parsed as it is, and parseManifest says what is wrong).
 * Throws a SyntaxError when the text is not JSON.
 */
export function readManifestText(text: string): unknown {
  let ids: [number, number] | undefined;
  try {
    const items = member(text, skipSpace(text, 0), "items");
    ids = items && member(text, items[0], "ids");
  } catch {
    ids = undefined;
  }
  if (!ids || text.charCodeAt(ids[0]) !== 91) return JSON.parse(text);
  const rest = JSON.parse(`${text.slice(0, ids[0])}[]${text.slice(ids[1])}`) as { items?: { ids?: unknown } };
  let list: IdList;
  try {
    list = new IdList(text, ids[0], ids[1]);
  } catch {
    return JSON.parse(text);
  }
  if (rest.items && typeof rest.items === "object") rest.items.ids = list;
  return rest;
}
