/**
 * Bearer API key check for /v1. Keys come from the API_KEY secret (comma-separated to rotate).
 * Comparison is constant-time over SHA-256 digests.
 */
import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "./env";
import { ApiError } from "./errors";

async function digest(s: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(s)));
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  let diff = a.length ^ b.length;
  for (let i = 0; i < a.length && i < b.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

export const requireApiKey: MiddlewareHandler<AppEnv> = async (c, next) => {
  const header = c.req.header("authorization") ?? "";
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!m) throw new ApiError(401, "unauthorized", "send the API key as 'Authorization: Bearer <key>'", { headers: { "WWW-Authenticate": "Bearer" } });
  const keys = (c.env.API_KEY ?? "").split(",").map((k) => k.trim()).filter(Boolean);
  const given = await digest(m[1]!);
  let ok = false;
  for (const k of keys) ok = equal(given, await digest(k)) || ok;
  if (!ok) throw new ApiError(401, "unauthorized", "invalid API key", { headers: { "WWW-Authenticate": "Bearer" } });
  await next();
};
