/**
 * OpenAPI plumbing shared by the feature sub-apps: every sub-app is an OpenAPIHono whose
 * validation failures become our 400 `{"error":{"code","message","field","details"}}`, and
 * the error responses every route may give are declared once here.
 */
import { OpenAPIHono, z } from "@hono/zod-openapi";
import type { AppEnv } from "../env";
import { ApiError } from "../errors";
import { MAX_ISSUES, fieldPath } from "./validate";

type Issue = z.core.$ZodIssue;

/** Where a request part's fields are named from: query params as `query.k`, path params by name. */
const ROOTS: Record<string, string> = { query: "query", param: "", json: "", header: "header", cookie: "cookie", form: "" };

/**
 * Flatten union issues to the branch that fits the input best (an array body: the array branch),
 * keeping at most `limit`. Iterative and without spreading: a huge bad batch yields a huge issue
 * list, which must neither overflow the stack nor be copied whole.
 */
function flatten(issues: readonly Issue[], input: unknown, limit = MAX_ISSUES): Issue[] {
  const out: Issue[] = [];
  // Work stack of [issues, index, path prefix]; depth is bounded by the schema's nesting.
  const stack: { list: readonly Issue[]; at: number; prefix: readonly PropertyKey[] }[] = [{ list: issues, at: 0, prefix: [] }];
  while (stack.length && out.length < limit) {
    const top = stack[stack.length - 1]!;
    if (top.at >= top.list.length) {
      stack.pop();
      continue;
    }
    const i = top.list[top.at++]!;
    const path = top.prefix.length ? [...top.prefix, ...i.path] : i.path;
    if (i.code === "invalid_union" && i.errors.length) {
      const fits = (b: readonly Issue[]) =>
        b.length > 0 && b.every((x) => x.path.length > 0 && (Array.isArray(input) ? typeof x.path[0] === "number" : typeof x.path[0] === "string"));
      const branch = i.errors.find(fits) ?? i.errors[i.errors.length - 1]!;
      stack.push({ list: branch as Issue[], at: 0, prefix: path });
    } else out.push(path === i.path ? i : ({ ...i, path } as Issue));
  }
  return out;
}

/** The zod failure of one request part as a 400 ApiError naming the first bad field. */
export function validationError(target: string, error: z.ZodError, input: unknown, rootOverride?: string): ApiError {
  const root = rootOverride ?? ROOTS[target] ?? target;
  const issues = flatten(error.issues as Issue[], input).map((i) => ({ field: fieldPath(i.path, root), message: i.message }));
  const first = issues[0] ?? { field: root || "body", message: "invalid" };
  return new ApiError(400, "invalid_request", `${first.field}: ${first.message}`, { field: first.field, details: issues });
}

type HookResult = { success: boolean; error?: unknown; data?: unknown; target?: string };

/**
 * A validation hook. `arrayRoot`: how fields of a JSON array body are named (`events[3].item_id`).
 */
// biome-ignore lint/suspicious/noExplicitAny: a hook must fit every route's Hook type; it returns nothing or throws.
export function hook(arrayRoot?: string): any {
  return (result: HookResult) => {
    if (result.success) return;
    const target = result.target ?? "json";
    const root = target === "json" && arrayRoot && Array.isArray(result.data) ? arrayRoot : undefined;
    throw validationError(target, result.error as z.ZodError, result.data, root);
  };
}

/** A feature sub-app: OpenAPIHono with our validation error format. */
export function featureApp() {
  return new OpenAPIHono<AppEnv>({ defaultHook: hook() });
}

export const ErrorSchema = z
  .object({
    error: z.object({
      code: z.string().openapi({ example: "invalid_request" }),
      message: z.string(),
      field: z.string().optional().openapi({ description: "The offending field, e.g. `events[3].item_id` or `query.k`." }),
      details: z.unknown().optional(),
    }),
  })
  .openapi("Error");

const describe: Record<number, string> = {
  400: "Invalid request (bad JSON, a field that fails validation)",
  401: "Missing or invalid API key",
  403: "The key's scope does not allow this endpoint (publishable key on a secret endpoint)",
  404: "Not found",
  409: "Conflict",
  413: "Body or batch too large",
  415: "Unsupported media type",
  422: "Well-formed but refers to unknown items",
  429: "Rate limit exceeded (see Retry-After)",
  503: "A dependency is unavailable (see Retry-After); safe to retry",
};

/** Error responses for a route's `responses`. 401, 429 and 400 are always included. */
export function errors(...codes: number[]) {
  const out: Record<number, { description: string; content: { "application/json": { schema: typeof ErrorSchema } } }> = {};
  for (const c of [400, 401, 429, ...codes]) out[c] = { description: describe[c] ?? "Error", content: { "application/json": { schema: ErrorSchema } } };
  return out;
}

/** JSON content helper. */
export const json = <T extends z.ZodType>(schema: T, description: string) => ({ description, content: { "application/json": { schema } } });
