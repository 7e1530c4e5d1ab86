"""The seen-items filter kept in each user's state record: which items the user already had, over
more sessions than the 20-item ring holds, in a fixed 768 bytes. src/state/seen.ts is the same
code in TypeScript; test/fixtures/seen-golden.json holds both to one answer.

Two Bloom filters ("generations") of BITS bits each, K hashes per item id (Kirsch-Mitzenmacher:
position i = (h1 + i * h2) mod BITS, h1 and h2 FNV-1a 32 of the id's UTF-8 bytes with two offset
bases, h2 forced odd). An item is added to the current generation unless it is already there; once
the current generation holds CAPACITY items it becomes the previous one and a fresh one starts. An
item is "seen" when either generation holds it, so the filter remembers at least the last CAPACITY
distinct items (up to 2 * CAPACITY), with a false-positive rate of at most ~1.5% (0.7% per full
generation).
"""
import numpy as np

GEN_BYTES = 384              # bytes per generation
BITS = GEN_BYTES * 8         # 3,072 bits per generation
K = 7                        # hashes per item
CAPACITY = 300               # items per generation before it rotates
_BASIS1, _BASIS2, _PRIME = 0x811C9DC5, 0x9747B28C, 0x01000193


def _fnv1a(data: bytes, h: int) -> int:
    for b in data:
        h = ((h ^ b) * _PRIME) & 0xFFFFFFFF
    return h


def positions(item_id: str) -> np.ndarray:
    """The K bit positions of an item id: (K,) int64."""
    data = str(item_id).encode("utf-8")
    h1, h2 = _fnv1a(data, _BASIS1), _fnv1a(data, _BASIS2) | 1
    return np.array([((h1 + i * h2) & 0xFFFFFFFF) % BITS for i in range(K)], dtype=np.int64)


def row_positions(ids) -> np.ndarray:
    """Bit positions of every embedding row (row r = ids[r - 1]; row 0, padding, gets -1): (N+1, K)."""
    out = np.full((len(ids) + 1, K), -1, dtype=np.int64)
    for r, i in enumerate(ids, start=1):
        out[r] = positions(i)
    return out


class SeenFilter:
    """One user's filter: `bits` (2, BITS) bool, current generation first; `count` items in it."""

    def __init__(self):
        self.bits = np.zeros((2, BITS), dtype=bool)
        self.count = 0

    def has(self, pos) -> bool:
        return bool(self.bits[0, pos].all() or self.bits[1, pos].all())

    def add(self, pos):
        if self.bits[0, pos].all():
            return
        if self.count >= CAPACITY:
            self.bits[1] = self.bits[0]
            self.bits[0] = False
            self.count = 0
        self.bits[0, pos] = True
        self.count += 1

    def members(self, table) -> np.ndarray:
        """Which rows of a row_positions table the filter holds: (N+1,) bool (row 0 never)."""
        out = self.bits[0][table].all(1) | self.bits[1][table].all(1)
        out[table[:, 0] < 0] = False
        return out

    def to_bytes(self) -> bytes:
        """Current generation then previous, bit j of a generation in byte j // 8 at bit j % 8."""
        return np.packbits(self.bits, axis=1, bitorder="little").tobytes()


def golden():
    """The cross-language check (test/fixtures/seen-golden.json): 700 distinct ids (two rotations),
    a repeat and a non-ASCII id; the final bytes, count and the answers for some probes."""
    ids = [f"item-{i}" for i in range(700)] + ["item-650", "película-7"]
    f = SeenFilter()
    for i in ids:
        f.add(positions(i))
    probes = ["item-0", "item-299", "item-300", "item-599", "item-650", "item-699", "película-7", "never-seen", "42"]
    return {"gen_bytes": GEN_BYTES, "k": K, "capacity": CAPACITY, "ids": ids,
            "positions": {p: positions(p).tolist() for p in probes},
            "count": f.count, "bytes_hex": f.to_bytes().hex(),
            "has": {p: f.has(positions(p)) for p in probes}}


if __name__ == "__main__":
    import json
    import sys
    out = sys.argv[1] if len(sys.argv) > 1 else "test/fixtures/seen-golden.json"
    with open(out, "w") as fh:
        json.dump(golden(), fh, ensure_ascii=False)
        fh.write("\n")
    print(f"wrote {out}")
