/**
 * Request validation helpers: JSON parsing and zod issues turned into 4xx ApiErrors that name
 * the offending field.
 */
import type { z } from "zod";
import { ApiError } from "../errors";

/** Most issues listed in an error's `details`. */
export const MAX_ISSUES = 20;

/** Path like `events[3].user_id` from a zod issue path. */
export function fieldPath(path: readonly PropertyKey[], root = ""): string {
  let out = root;
  for (const p of path) out += typeof p === "number" ? `[${p}]` : out ? `.${String(p)}` : String(p);
  return out || "body";
}

/** Parse with a schema or throw a 400 naming the first bad field (all issues in details). */
export function parseOr400<T extends z.ZodType>(schema: T, value: unknown, root = ""): z.infer<T> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issues = r.error.issues.slice(0, MAX_ISSUES).map((i) => ({ field: fieldPath(i.path, root), message: i.message }));
  const first = issues[0]!;
  throw new ApiError(400, "invalid_request", `${first.field}: ${first.message}`, { field: first.field, details: issues });
}

/** Parse a JSON request body or throw 400 malformed_json. */
export async function readJson(req: { arrayBuffer(): Promise<ArrayBuffer>; header(name: string): string | undefined }): Promise<unknown> {
  const type = req.header("content-type") ?? "";
  if (type && !/^application\/(json|x-ndjson)|\+json/i.test(type) && !/^text\/plain/i.test(type)) {
    throw new ApiError(415, "unsupported_media_type", "send the body as application/json");
  }
  const text = new TextDecoder().decode(await req.arrayBuffer());
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ApiError(400, "malformed_json", `body is not valid JSON: ${(e as Error).message}`, { field: "body" });
  }
}
