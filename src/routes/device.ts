/**
 * What a browser needs to score on the shopper's device (sdk/gru-device.js), publishable key:
 *   GET /v1/device/model                       the live model's version and where its files are
 *   GET /v1/device/model/{version}/{file}      manifest.json and the files it names, immutable
 *   GET /v1/users/{user_id}/state              the user's GRU state, recent items and purchases
 *                                              (a signed user token for identified users)
 * The API stays authoritative: the device advances a copy of the state on the events it tracks
 * and re-reads it from here when it wants to catch up.
 */
import { createRoute, z } from "@hono/zod-openapi";

import { ApiError } from "../errors";

import { errors, featureApp, json } from "../lib/openapi";

import { Id } from "../lib/schemas";

import { toBase64 } from "../state/codec";

import { StoreUnavailableError } from "../state/store";

import { requireUser } from "../user-access";

const modelUnavailable = (message: string) => new ApiError(503, "model_unavailable", message, { headers: { "Retry-After": "5" } });

const DeviceModel = z
  .object({
    name: z.string(),
    version: z.string(),
    files: z.record(z.string(), z.string()).openapi({ description: "File role (manifest, step, score, similar, weights) to its URL path." }),
  })
  .openapi("DeviceModel");

const info = createRoute({
  method: "get",
  path: "/model",
  summary: "The live model, for on-device scoring",
  description: "Its version and the paths of its files (versioned, so browsers may cache them forever). Publishable or secret key.",
  tags: ["device"],
  responses: { 200: json(DeviceModel, "The live model"), ...errors(403, 503) },
});

const FileParams = z.object({
  version: z.string().min(1).max(128).openapi({ param: { name: "version", in: "path" } }),
  file: z.string().min(1).max(128).openapi({ param: { name: "file", in: "path" }, example: "step.onnx" }),
});

const file = createRoute({
  method: "get",
  path: "/model/{version}/{file}",
  summary: "A file of the live model",
  description: "`manifest.json` or a graph or weights file it names. Only the live version is served (404 otherwise). `Cache-Control: immutable`.",
  tags: ["device"],
  request: { params: FileParams },
  responses: {
    200: { description: "The file", content: { "application/octet-stream": { schema: z.string().openapi({ format: "binary" }) } } },
    ...errors(403, 404, 503),
  },
});

const roles = (m: { graphs: Record<string, { file: string } | undefined>; weights: { file: string } }) => {
  const out: Record<string, string> = { manifest: "manifest.json", weights: m.weights.file };
  for (const [g, spec] of Object.entries(m.graphs)) if (spec) out[g] = spec.file;
  return out;
};

export const device = featureApp()
  .openapi(info, async (c) => {
    const loaded = await c.var.model.get();
    if (!loaded.ok) throw modelUnavailable(loaded.message);
    const m = loaded.model.manifest;
    if (m.shards) throw modelUnavailable(`model ${m.name} is sharded (${m.shards.length} item shards): its table does not fit one device download; rank on the server`);
    const base = `/v1/device/model/${encodeURIComponent(m.version)}/`;
    const files = Object.fromEntries(Object.entries(roles(m)).map(([role, f]) => [role, base + encodeURIComponent(f)]));
    c.header("Cache-Control", "no-cache");
    return c.json({ name: m.name, version: m.version, files }, 200);
  })
  .openapi(file, async (c) => {
    const { version, file: name } = c.req.valid("param");
    const loaded = await c.var.model.get();
    if (!loaded.ok) throw modelUnavailable(loaded.message);
    const m = loaded.model.manifest;
    const notFound = () => new ApiError(404, "not_found", `model ${version} has no file ${name} to serve`, { field: "file" });
    if (version !== m.version) throw notFound();
    const files = await c.var.model.files();
    if (!files) throw modelUnavailable(`model ${m.name} has no files`);
    let body: ArrayBuffer | Uint8Array | undefined;
    let type = "application/octet-stream";
    if (name === "manifest.json") {
      body = new TextEncoder().encode(JSON.stringify(files.manifest));
      type = "application/json";
    } else if (name === m.weights.file) body = files.weights;
    else if (name === m.graphs.step.file) body = files.step;
    else if (m.graphs.score && name === m.graphs.score.file) body = files.score;
    else if (m.graphs.similar && name === m.graphs.similar.file) body = files.similar;
    if (!body) throw notFound();
    // The version names the bytes: a new model is a new URL.
    c.header("Cache-Control", "public, max-age=31536000, immutable");
    c.header("Content-Type", type);
    const bytes = body instanceof Uint8Array ? body : new Uint8Array(body);
    return c.body(bytes as Uint8Array<ArrayBuffer>, 200);
  });

const UserState = z
  .object({
    user_id: z.string(),
    model_version: z.string(),
    state: z.string().openapi({ description: "The GRU state: float32 little-endian, base64." }),
    state_size: z.number().int(),
    event_count: z.number().int(),
    session_count: z.number().int(),
    last_event_ms: z.number().int().openapi({ description: "Time of the user's last event, ms since the epoch (0 before any)." }),
    ring_capacity: z.number().int(),
    recent: z.array(z.string()).openapi({ description: "Distinct recent items, newest first." }),
    purchased: z.array(z.string()),
  })
  .openapi("UserState");

const state = createRoute({
  method: "get",
  path: "/{user_id}/state",
  summary: "A user's state, for on-device scoring",
  description:
    "The stored GRU state vector with what the ranking rules need (recent items, purchases), so a browser can score on the device. Secret key, or a publishable key with the user's signed token (`X-User-Token`, see README \"Signed user tokens\"); anonymous visitors (`anon-<uuid v4>`, made by the snippet) need none: their id is the secret.",
  tags: ["device"],
  request: { params: z.object({ user_id: Id.openapi({ param: { name: "user_id", in: "path" }, example: "shopper-42" }) }) },
  responses: { 200: json(UserState, "The state"), ...errors(403, 404, 409, 503) },
});

export const userState = featureApp().openapi(state, async (c) => {
  const { user_id: id } = c.req.valid("param");
  await requireUser(c, id, "read");
  const snap = await c.var.store.read(id).catch((e) => {
    if (e instanceof StoreUnavailableError) {
      throw new ApiError(503, "state_unavailable", e.message, { headers: { "Retry-After": String(c.var.config.RETRY_AFTER_SECONDS) } });
    }
    throw e;
  });
  if (!snap.raw) throw new ApiError(404, "user_not_found", "no state is stored for this user", { field: "user_id" });
  if (!snap.state) throw new ApiError(409, "state_corrupt", snap.corrupt ?? "state unreadable", { field: "user_id" });
  const loaded = await c.var.model.get();
  if (!loaded.ok) throw modelUnavailable(loaded.message);
  const s = snap.state;
  const v = s.vector;
  c.header("Cache-Control", "no-store");
  return c.json(
    {
      user_id: id,
      model_version: c.var.store.modelVersion,
      state: toBase64(new Uint8Array(v.buffer, v.byteOffset, v.byteLength)),
      state_size: v.length,
      event_count: s.eventCount,
      session_count: s.sessionCount,
      last_event_ms: s.eventCount ? s.lastEventMs : 0,
      ring_capacity: s.ringCapacity,
      recent: s.ring.map((r) => loaded.model.idOf(r)),
      purchased: [...snap.purchased],
    },
    200,
  );
});
