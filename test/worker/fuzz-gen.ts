/**
 * fast-check arbitraries for the API fuzz tests (fuzz.test.ts): valid events and items, and
 * mutations that make each of them invalid for sure (so that "rejected, nothing changed" can be
 * asserted), plus the odd values a tester throws at a query string, a path or a body.
 */
import fc from "fast-check";

/** Object.prototype members and other names that break code using plain objects as maps. */
export const PROTO_NAMES = ["__proto__", "constructor", "toString", "valueOf", "hasOwnProperty", "isPrototypeOf", "__defineGetter__", "prototype", "length"];

const NOW = Date.now();

/** Strings a tester tries anywhere: empty, long, unicode, control characters, lone surrogates, proto names. */
export const oddString: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom("", " ", "0", "-0", "-1", "1e309", "NaN", "Infinity", "-Infinity", "0x10", "1,2", "true", "null", "[]", "{}", ">", " > ", ">>", "%", "%00", "\u0000", "\ud800", "\u202e", "🙂", "a\nb", ...PROTO_NAMES),
  fc.string({ maxLength: 40 }),
  fc.string({ unit: "binary", maxLength: 40 }),
  fc.string({ unit: "grapheme", maxLength: 20 }),
  fc.double().map(String),
  fc.bigInt().map(String),
  fc.integer({ min: 0, max: 5 }).map((n) => "x".repeat(10 ** n)),
);

/** Any JSON-compatible value (nested, unicode keys, huge and tiny numbers). */
export const anyJson: fc.Arbitrary<unknown> = fc.jsonValue({ maxDepth: 3 });

/** A value that is not a string. */
const notString = fc.oneof(fc.integer(), fc.double(), fc.boolean(), fc.constant(null), fc.array(fc.string(), { maxLength: 2 }), fc.dictionary(fc.string(), fc.string(), { maxKeys: 2 }));

/** Ids no route accepts: empty, too long, control characters, lone surrogates, outer spaces. */
export const badId: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom("", "x".repeat(257), "a\u0000b", "a\u001fb", "a\u007fb", "a\u0085b", "\ud800x", "x\udfff", " lead", "trail ", "\tx", "x\n"),
  fc.string({ minLength: 257, maxLength: 300 }),
  notString,
);

/** Ids that pass validation but that no model or catalog knows. */
export const unknownId: fc.Arbitrary<string> = fc
  .string({ minLength: 1, maxLength: 30, unit: "grapheme-ascii" })
  .map((s) => `fz-nope-${s.trim() || "x"}`);

/** A syntactically valid event on a known item (applied if sent alone and well-formed). */
export function validEvent(users: readonly string[], items: readonly string[]) {
  return fc.record(
    {
      user_id: fc.constantFrom(...users),
      item_id: fc.constantFrom(...items),
      type: fc.constantFrom("view", "add_to_cart", "purchase", "wishlist_2"),
      event_id: fc.string({ minLength: 1, maxLength: 20, unit: "grapheme-ascii" }).map((s) => `fz-${s.trim() || "e"}`),
      timestamp: fc.oneof(fc.integer({ min: Date.UTC(2000, 0, 1), max: NOW }), fc.constant(new Date(NOW - 1000).toISOString())),
    },
    { requiredKeys: ["user_id", "item_id", "type"] },
  );
}

const badType = fc.oneof(fc.constantFrom("", "View", "look at", "a".repeat(33), "1abc", "view\n", "vi-ew", "ü"), notString);
const badTimestamp = fc.oneof(
  fc.constantFrom(-1, 1.5, 1e300, -0.5, Date.UTC(1999, 11, 31), NOW + 3 * 86_400_000, Number.MAX_SAFE_INTEGER + 2, "yesterday", "2020-13-01T00:00:00Z", "", "2020-01-01", "+275760-09-13T00:00:00.000Z", "9999-12-31T23:59:59Z"),
  fc.double({ noInteger: true }),
  fc.integer({ min: -(2 ** 31), max: -1 }),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.integer(), { maxLength: 2 }),
);
const EVENT_FIELDS = new Set(["user_id", "item_id", "type", "event_id", "timestamp"]);
const extraKey = fc.oneof(fc.constantFrom(...PROTO_NAMES, "userId", "USER_ID", "user_id ", ""), fc.string({ maxLength: 12 })).filter((k) => !EVENT_FIELDS.has(k));

/** Set a property as an own data property, even "__proto__". */
function withKey(o: Record<string, unknown>, key: string, value: unknown): Record<string, unknown> {
  const out = { ...o };
  Object.defineProperty(out, key, { value, enumerable: true, configurable: true, writable: true });
  return out;
}

function without(o: Record<string, unknown>, key: string): Record<string, unknown> {
  const out = { ...o };
  delete out[key];
  return out;
}

/** One event that fails validation (400) or names an item nobody knows (422), for sure. */
export function badEvent(users: readonly string[], items: readonly string[]): fc.Arbitrary<unknown> {
  const base = validEvent(users, items) as fc.Arbitrary<Record<string, unknown>>;
  return fc.oneof(
    fc.tuple(base, badId).map(([e, v]) => ({ ...e, user_id: v })),
    fc.tuple(base, fc.oneof(badId, unknownId)).map(([e, v]) => ({ ...e, item_id: v })),
    fc.tuple(base, badType).map(([e, v]) => ({ ...e, type: v })),
    fc.tuple(base, badTimestamp).map(([e, v]) => ({ ...e, timestamp: v })),
    fc.tuple(base, badId).map(([e, v]) => ({ ...e, event_id: v })),
    fc.tuple(base, extraKey, anyJson).map(([e, k, v]) => withKey(e, k, v)),
    fc.tuple(base, fc.constantFrom("user_id", "item_id", "type")).map(([e, k]) => without(e, k)),
    fc.oneof(notString, fc.string()).filter((v) => v === null || typeof v !== "object" || Array.isArray(v)),
  );
}

/** An events body that must be rejected: one bad event, or a batch holding at least one. */
export function badEventsBody(users: readonly string[], items: readonly string[]): fc.Arbitrary<unknown> {
  const good = validEvent(users, items);
  const bad = badEvent(users, items);
  return fc.oneof(
    { weight: 3, arbitrary: bad },
    {
      weight: 3,
      arbitrary: fc
        .tuple(fc.array(good, { maxLength: 4 }), fc.array(bad, { minLength: 1, maxLength: 3 }), fc.array(good, { maxLength: 4 }))
        .map(([a, b, c]) => [...a, ...b, ...c]),
    },
    { weight: 1, arbitrary: fc.constant([]) },
    { weight: 1, arbitrary: fc.array(good, { minLength: 501, maxLength: 520 }) },
    { weight: 1, arbitrary: fc.array(fc.oneof(anyJson, fc.constant([])), { minLength: 1, maxLength: 5 }).filter((xs) => xs.some((x) => x === null || typeof x !== "object" || Array.isArray(x))) },
  );
}

/** A valid catalog item body (without id). */
export const validItem = fc.record(
  {
    title: fc.string({ minLength: 1, maxLength: 40 }),
    category_path: fc.array(fc.constantFrom("Shoes", "Running", "Films", ...PROTO_NAMES), { maxLength: 3 }),
    price: fc.oneof(fc.constant(null), fc.double({ min: 0, max: 1e6, noNaN: true })),
    currency: fc.constantFrom("EUR", "USD", null),
    available: fc.boolean(),
    url: fc.constantFrom("https://shop.example/p/1", null),
    attributes: fc.dictionary(fc.string({ minLength: 1, maxLength: 10 }).filter((k) => k !== "__proto__"), fc.string({ maxLength: 10 }), { maxKeys: 3 }),
  },
  { requiredKeys: ["title"] },
);

const ITEM_FIELDS = new Set(["id", "title", "category_path", "price", "currency", "available", "url", "image_url", "attributes"]);
const badUrl = fc.oneof(fc.constantFrom("", "ftp://x", "http://a b", "javascript:alert(1)", "//x", `https://${"a".repeat(2050)}`, "https://"), notString.filter((v) => v !== null));
const badItemFields: [string, fc.Arbitrary<unknown>][] = [
  ["title", fc.oneof(fc.constantFrom("", "t".repeat(501), null), notString.filter((v) => typeof v !== "string"))],
  [
    "category_path",
    fc.oneof(
      fc.constantFrom("Shoes", null, ["a > b"], ["a>b"], [""], [" a"], ["a\u0000"], ["x".repeat(101)], Array.from({ length: 9 }, () => "a"), [1], [null]),
      fc.dictionary(fc.string(), fc.string(), { maxKeys: 2 }),
    ),
  ],
  ["price", fc.constantFrom(-1, -0.01, 1e13, 1e300, "10", "", true, [], {})],
  ["currency", fc.constantFrom("eur", "EURO", "EU", "", 1, "€", "E U")],
  ["available", fc.constantFrom("true", 1, 0, null, "yes", [])],
  ["url", badUrl],
  ["image_url", badUrl],
  ["attributes", fc.constantFrom(null, [], "x", 1, { "": 1 }, { ["k".repeat(65)]: 1 }, { big: "x".repeat(9000) }, JSON.parse('{"__proto__":{"a":1}}'))],
];

/**
 * An item body that fails validation for sure. `partial`: as a PATCH (every field optional, but
 * `null` only where nullable).
 */
export function badItem(partial: boolean): fc.Arbitrary<unknown> {
  const base = validItem as fc.Arbitrary<Record<string, unknown>>;
  const nonNullable = fc.constantFrom("title", "category_path", "available", "attributes");
  return fc.oneof(
    ...badItemFields.map(([field, arb]) => fc.tuple(base, arb).map(([b, v]) => withKey(b, field, v))),
    fc.tuple(base, fc.oneof(fc.constantFrom(...PROTO_NAMES, "Title", "sku", ""), fc.string({ maxLength: 10 })).filter((k) => !ITEM_FIELDS.has(k)), anyJson).map(([b, k, v]) => withKey(b, k, v)),
    partial ? fc.tuple(base, nonNullable).map(([b, k]) => withKey(b, k, null)) : base.map((b) => without(b, "title")),
    fc.oneof(notString, fc.string()).filter((v) => v === null || typeof v !== "object" || Array.isArray(v)),
  );
}

/** Query values (as sent, before percent-encoding) that a recommendation endpoint may get. */
export const queryParams = (keys: readonly string[]) =>
  fc.array(fc.tuple(fc.oneof({ weight: 5, arbitrary: fc.constantFrom(...keys) }, { weight: 1, arbitrary: oddString }), fc.oneof(oddString, fc.integer().map(String))), {
    maxLength: 5,
  });

/** Percent-encode every byte of the UTF-8 of `s` that is not unreserved (lone surrogates become U+FFFD). */
export function pct(s: string): string {
  let out = "";
  for (const b of new TextEncoder().encode(s)) {
    const c = String.fromCharCode(b);
    out += /[A-Za-z0-9\-._~]/.test(c) ? c : `%${b.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

/** A path segment: usually an encoded odd string, sometimes raw percent soup or invalid UTF-8. */
export const pathSegment: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: oddString.filter((s) => s.length > 0).map(pct) },
  { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 8 }).map((b) => Array.from(b, (x) => `%${x.toString(16).padStart(2, "0")}`).join("")) },
  { weight: 1, arbitrary: fc.constantFrom("%", "%%", "%zz", "%E0%A4%A", "..", ".", "%2e%2e", "%2F", "a%2Fb", ";", "*", ":id", "{item_id}") },
);

/** A query string from [key, value] pairs (keys and values percent-encoded, duplicates kept). */
export function queryString(pairs: readonly (readonly [string, string])[]): string {
  return pairs.length ? `?${pairs.map(([k, v]) => `${pct(k)}=${pct(v)}`).join("&")}` : "";
}

/** Methods workerd's Request accepts (others, such as `FOO`, never reach a worker). */
export const METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PROPFIND", "PURGE", "TRACE", "COPY", "MOVE", "LOCK", "MKCOL", "REPORT", "SEARCH"];

/** Content types that are not JSON (a valid JSON body sent with them must be refused). */
export const NOT_JSON_TYPES = ["text/plain", "text/html", "application/xml", "application/x-www-form-urlencoded", "multipart/form-data; boundary=zz", "application/octet-stream", "application/x-ndjson", "image/png"];

/** Content types a JSON body is sent with. */
export const JSON_TYPES = ["application/json", "application/json; charset=utf-8", "application/json;charset=UTF-8"];
