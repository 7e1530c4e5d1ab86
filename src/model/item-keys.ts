/**
 * One dictionary of item ids per isolate (issue 18): every id the catalog copy or a loaded model
 * knows gets a small integer key, and its string is kept once. The catalog copy keeps its facts in
 * columns indexed by key and a model maps its rows to keys and back, so at a million items the
 * isolate holds one set of id strings and two Int32Arrays where it held the catalog's
 * Map<string, slot>, the model's ids array and its index (each a copy of the million ids or a
 * table over them).
 *
 * The ids are kept as their UTF-16 code units in one growing Uint16Array (no string objects: a
 * million short ids take about 14 MB there where V8 strings and the array of them took about 33),
 * found through an open-addressing table of keys in one Int32Array (2 to 4 slots an id), probed by
 * a 32-bit FNV-1a hash and confirmed against the stored code units. `id(k)` builds the string when
 * it is asked for (a list's few items). Keys are never reused: an id deleted from the catalog keeps
 * its key (the isolate's lifetime bounds how many distinct ids it meets).
 */

/** FNV-1a over the id's UTF-16 code units. */
function hash(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

export class ItemKeys {
  /** Every id's UTF-16 code units, one after another (key k's are chars[start[k] .. start[k + 1])). */
  private chars = new Uint16Array(16384);
  /** Where each key's id starts in `chars`; key 0 is never given (0 means "none" in the tables). */
  private start = new Uint32Array(1024);
  private n = 0;
  private slots = new Int32Array(1024);
  private mask = 1023;

  /** Keys given so far; every key is in 1..size. */
  get size(): number {
    return this.n;
  }

  /** Does key k spell `id`? */
  private is(k: number, id: string): boolean {
    const a = this.start[k]!;
    if (this.start[k + 1]! - a !== id.length) return false;
    for (let i = 0; i < id.length; i++) if (this.chars[a + i] !== id.charCodeAt(i)) return false;
    return true;
  }

  /** The slot of `id`: where its key is, or the empty slot where it would go. */
  private slotOf(id: string): number {
    let h = hash(id) & this.mask;
    for (let k = this.slots[h]!; k !== 0 && !this.is(k, id); k = this.slots[h]!) h = (h + 1) & this.mask;
    return h;
  }

  /** The key of `id`, or 0 when it has none. */
  find(id: string): number {
    return this.slots[this.slotOf(id)]!;
  }

  /** The key of `id`, given now when it has none. */
  key(id: string): number {
    const h = this.slotOf(id);
    if (this.slots[h] !== 0) return this.slots[h]!;
    const k = ++this.n;
    if (k + 2 > this.start.length) this.start = grown(this.start, k + 2, (m) => new Uint32Array(m));
    const a = this.start[k]!;
    if (a + id.length > this.chars.length) this.chars = grown(this.chars, a + id.length, (m) => new Uint16Array(m));
    for (let i = 0; i < id.length; i++) this.chars[a + i] = id.charCodeAt(i);
    this.start[k + 1] = a + id.length;
    this.slots[h] = k;
    if (k * 2 > this.mask) this.rehash();
    return k;
  }

  /** Make room for `ids` more keys of `chars` code units in all (no growth steps while they are
   * added: a model's million ids would otherwise copy the buffers several times). */
  reserve(ids: number, chars: number): void {
    const k = this.n + ids;
    if (k + 2 > this.start.length) this.start = grown(this.start, k + 2, (m) => new Uint32Array(m), 1);
    const c = this.start[this.n + 1]! + chars;
    if (c > this.chars.length) this.chars = grown(this.chars, c, (m) => new Uint16Array(m), 1);
    while (k * 2 > this.mask) this.rehash();
  }

  /** The order of the ids of keys a and b as JavaScript orders strings (UTF-16 code units), without
   * building them: negative, 0 or positive. */
  compare(a: number, b: number): number {
    const [i, m] = [this.start[a]!, this.start[a + 1]!];
    const [j, n] = [this.start[b]!, this.start[b + 1]!];
    for (let x = 0; x < m - i && x < n - j; x++) {
      const d = this.chars[i + x]! - this.chars[j + x]!;
      if (d) return d;
    }
    return m - i - (n - j);
  }

  /** The id of key `k` (1..size): a new string each call. */
  id(k: number): string {
    const a = this.start[k]!;
    const b = this.start[k + 1]!;
    let s = "";
    for (let i = a; i < b; i += 4096) s += String.fromCharCode.apply(null, this.chars.subarray(i, Math.min(b, i + 4096)) as unknown as number[]);
    return s;
  }

  private rehash(): void {
    const cap = this.slots.length * 2;
    const slots = new Int32Array(cap);
    const mask = cap - 1;
    for (let k = 1; k <= this.n; k++) {
      let h = hash(this.id(k)) & mask;
      while (slots[h] !== 0) h = (h + 1) & mask;
      slots[h] = k;
    }
    this.slots = slots;
    this.mask = mask;
  }
}

/** A copy of `a` at least `need` long (doubling; `exact`: `need` long), its values kept. */
function grown<T extends Uint16Array | Uint32Array>(a: T, need: number, make: (n: number) => T, exact = 0): T {
  let n = a.length;
  if (exact) n = need;
  else while (n < need) n *= 2;
  const b = make(n);
  b.set(a);
  return b;
}

/** The isolate's dictionary, shared by the catalog copy and every loaded model. */
export const itemKeys = new ItemKeys();

/**
 * A model's rows as keys of `keys` and back: row r's key is `rowKey[r]` (row 0, the padding row,
 * has none), and `rowOf(id)` is the row of an id. Throws a RangeError naming an id seen twice.
 */
export class RowKeys {
  /** Row -> key (0 for the padding row). */
  readonly rowKey: Int32Array;
  /** Key -> row (0: not a row of this model), over the keys given when the model was indexed. */
  private readonly keyRow: Int32Array;

  /** `ids`: row r's id is the (r-1)th (an array, or a manifest's IdList: read twice, one id at a time). */
  constructor(
    ids: Iterable<string> & { readonly length: number },
    private readonly keys: ItemKeys = itemKeys,
  ) {
    this.rowKey = new Int32Array(ids.length + 1);
    let fresh = 0;
    let chars = 0;
    for (const id of ids) {
      if (keys.find(id) === 0) {
        fresh++;
        chars += id.length;
      }
    }
    keys.reserve(fresh, chars);
    let r = 0;
    for (const id of ids) this.rowKey[++r] = keys.key(id);
    this.keyRow = new Int32Array(keys.size + 1);
    for (let r = 1; r <= ids.length; r++) {
      const k = this.rowKey[r]!;
      if (this.keyRow[k] !== 0) throw new RangeError(`id ${JSON.stringify(keys.id(k))} appears twice`);
      this.keyRow[k] = r;
    }
  }

  /** Is key k one of this model's rows' keys. */
  hasKey(k: number): boolean {
    return k > 0 && k < this.keyRow.length && this.keyRow[k] !== 0;
  }

  /** The row of `id` (1..), or undefined when the model does not know it. */
  rowOf(id: string): number | undefined {
    const k = this.keys.find(id);
    const r = k < this.keyRow.length ? this.keyRow[k]! : 0;
    return r === 0 ? undefined : r;
  }

  /** The id of row `r` (1..rows-1). */
  idOf(r: number): string {
    return this.keys.id(this.rowKey[r]!);
  }
}
