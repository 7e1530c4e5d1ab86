/**
 * Which users a publishable-key request may act for (signed user tokens, src/lib/user-token.ts).
 *
 * A publishable key is public (every shopper's browser has it), so with it alone a request may
 * only touch anonymous visitors (`anon-<UUID v4>`: the id itself is the secret) and, where the shop
 * allows it, identified users. Per need:
 *   read             state, recent items, purchases, user summary: always a valid token for that user
 *   recommendations  recommendations and similar items personalised for a user_id: a token when
 *                    REQUIRE_USER_TOKEN names "recommendations" (or "all")
 *   events           events of an identified user: a token when REQUIRE_USER_TOKEN names "events"
 * The token comes in the `X-User-Token` header. A secret key acts for everyone. Checked before any
 * read, so a refusal says nothing about whether the user exists.
 */
import type { Context } from "hono";
import type { AppEnv } from "./env";
import { ApiError } from "./errors";
import { type TokenCheck, isAnonymousId, tokenSecrets, verifyUserToken } from "./lib/user-token";

/** The request header carrying a signed user token. */
export const USER_TOKEN_HEADER = "X-User-Token";

export type UserNeed = "read" | "recommendations" | "events";

const verified = new WeakMap<Request, Promise<TokenCheck | null>>();

/** The request's token, verified once per request (null: none sent). */
function tokenOf(c: Context<AppEnv>): Promise<TokenCheck | null> {
  let p = verified.get(c.req.raw);
  if (!p) {
    const given = c.req.header(USER_TOKEN_HEADER)?.trim();
    p = given ? verifyUserToken(tokenSecrets(c.env.USER_TOKEN_SECRETS), given) : Promise.resolve(null);
    verified.set(c.req.raw, p);
  }
  return p;
}

/** Does this need call for a token under the configuration? */
function needsToken(c: Context<AppEnv>, need: UserNeed): boolean {
  if (need === "read") return true;
  return c.var.config.REQUIRE_USER_TOKEN.has(need);
}

/**
 * Throw 401/403 unless this request may act for every one of `userIds` (a secret key, an
 * anonymous id, a need the shop left open, or a valid token for that user).
 */
export async function requireUsers(c: Context<AppEnv>, userIds: Iterable<string>, need: UserNeed): Promise<void> {
  if (c.var.keyScope === "secret" || !needsToken(c, need)) return;
  for (const id of new Set(userIds)) {
    if (isAnonymousId(id)) continue;
    if (!tokenSecrets(c.env.USER_TOKEN_SECRETS).length) {
      throw new ApiError(403, "user_token_required", `a publishable key may not ${verb(need)} an identified user while USER_TOKEN_SECRETS is not set; use a secret key from your server`, {
        field: "user_id",
      });
    }
    const t = await tokenOf(c);
    if (!t) {
      throw new ApiError(401, "user_token_required", `send a token signed by your server for user ${JSON.stringify(id)} in the ${USER_TOKEN_HEADER} header to ${verb(need)} an identified user with a publishable key`, {
        field: "user_id",
      });
    }
    if (!t.ok) {
      throw t.reason === "expired"
        ? new ApiError(401, "user_token_expired", "the user token has expired: get a fresh one from your server", { field: "user_token" })
        : new ApiError(401, "invalid_user_token", t.reason === "bad_signature" ? "the user token's signature is not valid" : "the user token is malformed", { field: "user_token" });
    }
    if (t.userId !== id) throw new ApiError(403, "user_token_mismatch", "the user token was issued for another user", { field: "user_id" });
  }
}

/** `requireUsers` for one user. */
export function requireUser(c: Context<AppEnv>, userId: string, need: UserNeed): Promise<void> {
  return requireUsers(c, [userId], need);
}

function verb(need: UserNeed): string {
  return need === "read" ? "read the data of" : need === "events" ? "send events for" : "get recommendations for";
}
