/**
 * API errors: thrown anywhere, mapped to `{"error":{"code","message"}}` in one onError.
 */
import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";

export class ApiError extends Error {
  constructor(
    readonly status: ContentfulStatusCode,
    readonly code: string,
    message: string,
    readonly extra: { field?: string; details?: unknown; headers?: Record<string, string> } = {},
  ) {
    super(message);
    this.name = "ApiError";
  }
}

export function errorBody(code: string, message: string, extra: { field?: string; details?: unknown } = {}) {
  const error: Record<string, unknown> = { code, message };
  if (extra.field !== undefined) error.field = extra.field;
  if (extra.details !== undefined) error.details = extra.details;
  return { error };
}

/** The single fault mapper. Unknown faults become a 500 without internals leaking. */
export function onError(err: Error, c: Context) {
  if (err instanceof ApiError) {
    for (const [k, v] of Object.entries(err.extra.headers ?? {})) c.header(k, v);
    return c.json(errorBody(err.code, err.message, err.extra), err.status);
  }
  if (err instanceof HTTPException) {
    const status = err.status as ContentfulStatusCode;
    const code =
      status === 413
        ? "body_too_large"
        : status === 401
          ? "unauthorized"
          : status === 415
            ? "unsupported_media_type"
            : status === 400 && /json/i.test(err.message)
              ? "malformed_json"
              : "http_error";
    return c.json(errorBody(code, err.message || "request rejected"), status);
  }
  console.error("unhandled error", err);
  return c.json(errorBody("internal", "internal error"), 500);
}
