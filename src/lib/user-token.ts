/**
 * Signed user tokens: the shop's server vouches that a browser acts for one customer.
 *
 * A token is `ut1.<payload>.<signature>`: `payload` is base64url JSON `{"user_id","exp"}` (`exp`:
 * seconds since the epoch), `signature` is base64url HMAC-SHA256 over `ut1.<payload>` with one
 * of USER_TOKEN_SECRETS (a comma-separated list: the first signs, all verify, so a secret can be
 * rotated). Web Crypto only, so the same code signs in a Worker, in Node >= 20 and in a browser
 * test, and verification is constant-time (`crypto.subtle.verify`).
 *
 * Anonymous visitor ids (`anon-<UUID v4>`, made by sdk/gru.js) need no token: the id is 122 random
 * bits that only the visitor's browser knows, so holding it is the proof; a shop's customer ids
 * never have that shape (see `isAnonymousId`).
 */

const PREFIX = "ut1";
const enc = new TextEncoder();
const dec = new TextDecoder();

/** Longest token accepted, characters (a 256-character id in base64url, its JSON and a signature). */
export const MAX_USER_TOKEN_LENGTH = 1024;

/** The anonymous ids sdk/gru.js makes: `anon-` and a UUID v4 in lower-case hex. */
const ANONYMOUS = /^anon-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** Is `id` an anonymous visitor id (no token needed)? Any other id is an identified user. */
export function isAnonymousId(id: string): boolean {
  return ANONYMOUS.test(id);
}

function b64url(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function unb64url(s: string): Uint8Array | null {
  if (!/^[A-Za-z0-9_-]*$/.test(s)) return null;
  try {
    const bin = atob(s.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (s.length % 4)) % 4));
    return Uint8Array.from(bin, (c) => c.charCodeAt(0));
  } catch {
    return null;
  }
}

const keyCache = new Map<string, Promise<CryptoKey>>();

function hmacKey(secret: string): Promise<CryptoKey> {
  let k = keyCache.get(secret);
  if (!k) {
    if (keyCache.size > 16) keyCache.clear();
    k = crypto.subtle.importKey("raw", enc.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign", "verify"]);
    keyCache.set(secret, k);
  }
  return k;
}

/** The secrets of a comma-separated USER_TOKEN_SECRETS value (empty: tokens are off). */
export function tokenSecrets(value: string | undefined): string[] {
  return (value ?? "").split(",").map((s) => s.trim()).filter(Boolean);
}

/**
 * Sign a token for `userId`, valid for `ttlSeconds` (default 3600) from `nowMs`. Run this on the
 * shop's server (the secret must never reach a browser).
 */
export async function signUserToken(secret: string, userId: string, ttlSeconds = 3600, nowMs = Date.now()): Promise<string> {
  if (!secret) throw new Error("signUserToken: the secret is empty");
  if (!(ttlSeconds > 0)) throw new Error("signUserToken: ttlSeconds must be positive");
  const payload = b64url(enc.encode(JSON.stringify({ user_id: userId, exp: Math.floor(nowMs / 1000 + ttlSeconds) })));
  const signed = `${PREFIX}.${payload}`;
  const sig = new Uint8Array(await crypto.subtle.sign("HMAC", await hmacKey(secret), enc.encode(signed)));
  return `${signed}.${b64url(sig)}`;
}

/** Why a token was refused. */
export type TokenFailure = "malformed" | "bad_signature" | "expired";

export type TokenCheck = { ok: true; userId: string; exp: number } | { ok: false; reason: TokenFailure };

/**
 * Verify a token against every secret. The signature is checked before the payload is read, so a
 * forged payload is never parsed.
 */
export async function verifyUserToken(secrets: readonly string[], token: string, nowMs = Date.now()): Promise<TokenCheck> {
  if (token.length > MAX_USER_TOKEN_LENGTH) return { ok: false, reason: "malformed" };
  const parts = token.split(".");
  if (parts.length !== 3 || parts[0] !== PREFIX) return { ok: false, reason: "malformed" };
  const sig = unb64url(parts[2]!);
  const payloadBytes = unb64url(parts[1]!);
  if (!sig || sig.length !== 32 || !payloadBytes) return { ok: false, reason: "malformed" };
  const signed = enc.encode(`${PREFIX}.${parts[1]}`);
  let valid = false;
  for (const s of secrets) if (await crypto.subtle.verify("HMAC", await hmacKey(s), sig, signed)) valid = true;
  if (!valid) return { ok: false, reason: "bad_signature" };
  let payload: unknown;
  try {
    payload = JSON.parse(dec.decode(payloadBytes));
  } catch {
    return { ok: false, reason: "malformed" };
  }
  const p = payload as { user_id?: unknown; exp?: unknown };
  if (typeof p?.user_id !== "string" || typeof p.exp !== "number" || !Number.isFinite(p.exp)) return { ok: false, reason: "malformed" };
  if (p.exp * 1000 <= nowMs) return { ok: false, reason: "expired" };
  return { ok: true, userId: p.user_id, exp: p.exp };
}
