/**
 * Shared zod schemas for ids and events. Ids are catalog strings (SKUs, user ids) of at most
 * 256 characters, without control characters.
 */
import { z } from "@hono/zod-openapi";

/** Longest user or item id accepted, characters. */
export const MAX_ID_LENGTH = 256;

// Control characters (C0, DEL, C1) and lone surrogates make ids unprintable or unstorable.
// eslint-disable-next-line no-control-regex
const BAD_ID = /[\u0000-\u001f\u007f-\u009f]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

export const Id = z
  .string()
  .min(1, "must not be empty")
  .max(MAX_ID_LENGTH, `must be at most ${MAX_ID_LENGTH} characters`)
  .refine((s) => !BAD_ID.test(s), "must not contain control characters or unpaired surrogates")
  .refine((s) => s.trim() === s, "must not start or end with whitespace");

const EARLIEST_MS = Date.UTC(2000, 0, 1);

/** Event timestamp: milliseconds since the epoch, or an ISO 8601 string. */
export const Timestamp = z
  .union([z.number().int().nonnegative(), z.string().datetime({ offset: true })])
  .transform((v) => (typeof v === "number" ? v : Date.parse(v)))
  .refine((ms) => ms >= EARLIEST_MS, "must be on or after 2000-01-01")
  .refine((ms) => ms <= Date.now() + 24 * 3600 * 1000, "must not be more than 24 h in the future");

export const EventSchema = z
  .strictObject({
    event_id: Id.optional().openapi({ description: "Idempotency key: an event_id is applied once per user, however often it is sent.", example: "e-7f3a" }),
    user_id: Id.openapi({ example: "shopper-42" }),
    item_id: Id.openapi({ example: "sku-123" }),
    type: z
      .string()
      .regex(/^[a-z][a-z0-9_]{0,31}$/, 'must be a lower-case event name such as "view", "add_to_cart" or "purchase"')
      .openapi({
        example: "view",
        description: 'Any lower-case name; "view", "click" (on a recommended item, with its rec_id), "add_to_cart" and "purchase" are the ones the engine knows. "purchase" items are never recommended to the user again.',
      }),
    rec_id: Id.optional().openapi({
      description: "The `rec_id` of the recommendation list the item was picked from (a click, an add-to-cart from a list): ties the event to the experiment variant that showed it.",
    }),
    timestamp: Timestamp.optional().openapi({
      description: "Milliseconds since the epoch (integer) or an ISO 8601 time (string); default: receipt time.",
    }),
  })
  .openapi("Event");

export type EventInput = z.infer<typeof EventSchema>;
