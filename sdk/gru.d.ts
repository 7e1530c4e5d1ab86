/** Types of the storefront snippet (sdk/gru.js). */
export interface RecommenderOptions {
  /** Base URL of the recommender worker, e.g. "https://recs.example.com". */
  endpoint: string;
  /** A publishable key (events and recommendations only). */
  key: string;
  /** A known customer id; default: an anonymous id (`anon-<uuid>`) kept in localStorage. */
  userId?: string;
  /** The known customer's signed user token (from the shop's server), sent as `X-User-Token`. */
  userToken?: string;
  /** Send queued events after this long, ms. Default 1000. */
  flushIntervalMs?: number;
  /** Events per request, at most 500. Default 50. */
  maxBatch?: number;
  /** Retries of a batch on network errors, 429 and 5xx. Default 6. */
  maxRetries?: number;
  /** Most events kept while offline; older ones are dropped. Default 1000. */
  maxQueue?: number;
  /** Where the anonymous id is kept; null: nowhere. Default localStorage. */
  storage?: { getItem(k: string): string | null; setItem(k: string, v: string): void } | null;
  fetch?: typeof fetch;
  /** Called with events that could not be sent. Default console.warn. */
  onError?: (e: Error & { status?: number; body?: unknown }) => void;
  sleep?: (ms: number) => Promise<void>;
  /** Called with every tracked event as it is queued (e.g. an on-device scorer's `observe`, see gru-device.js). */
  onTrack?: (e: { event_id: string; user_id: string; item_id: string; type: string; timestamp: number }) => void;
}

/** A boost: `key:value^weight` text ("brand:Acme^0.5", "category:Shoes^1", "new:14^1") or an object. */
export type Boost =
  | string
  | { attribute: string; value: string | number | boolean; weight?: number }
  | { category: string; weight?: number }
  /** Items that arrived within this many days: the full weight at arrival, fading to 0. */
  | { newWithinDays: number; weight?: number };

export interface ArrangeOptions {
  /** Additive boosts (model scores are logits: +1 multiplies the odds by e). At most 10. */
  boost?: Boost | Boost[];
  /** At most this many items of one category. */
  maxPerCategory?: number;
  /** Category levels that make "one category" for maxPerCategory. Default 1. */
  categoryLevel?: number;
  /** Share of the list kept for new arrivals (0..1). */
  explore?: number;
  /** Days an item counts as a new arrival for `explore`. Default 30. */
  newDays?: number;
}

export interface RecommendOptions extends ArrangeOptions {
  k?: number;
  category?: string;
  minPrice?: number;
  maxPrice?: number;
  exclude?: string[];
  include?: "metadata";
  excludeRecent?: boolean;
  /** Leave out every item the shopper already had, in any session (catalogs where an item is had once). */
  excludeSeen?: boolean;
  /** Where the list is shown (experiments run per placement): default "home" / "product". */
  placement?: string;
}

export interface RecItem {
  item_id: string;
  score: number;
  /** "new": a new arrival the model cannot score, placed by the exploration share. */
  source: "model" | "popular" | "new";
  /** What boosts added to the score. */
  boost?: number;
  /** Placed by the exploration share. */
  explore?: true;
  /** Scored with a warm-start row (a catalog item the model was not trained on yet). */
  warm?: true;
  item?: { title: string; category_path: string[]; price: number | null; currency: string | null; url: string | null; image_url: string | null; available: boolean; attributes: Record<string, unknown> };
}

export interface Recommendations {
  items: RecItem[];
  source: "model" | "popular";
  reason?: string;
  model_version: string | null;
  /** The experiment and variant that served this list (null outside experiments). */
  experiment: string | null;
  variant: string | null;
  /** This list's id: pass it to `click` (or `track(..., { recId })`) for items picked from it. */
  rec_id: string;
}

export interface Recommender {
  track(type: string, itemId: string, extra?: { timestamp?: number; eventId?: string; recId?: string }): void;
  /** Track a click on an item of a recommendation list (`recId`: its `rec_id`). */
  click(itemId: string, recId: string, extra?: { timestamp?: number; eventId?: string }): void;
  flush(): Promise<void>;
  recommend(o?: RecommendOptions): Promise<Recommendations & { user_id: string }>;
  /** Re-rank your own list (at most 500 ids) for this shopper; items the rules leave out are in `excluded`. */
  rank(itemIds: string[], o?: Omit<RecommendOptions, "k"> & { variant?: string }): Promise<Recommendations & { user_id: string; excluded: string[] }>;
  similar(itemId: string, o?: Omit<RecommendOptions, "excludeRecent" | "excludeSeen">): Promise<Recommendations & { item_id: string }>;
  /** Switch to a known customer id (after login), with the signed user token your server made for them. */
  identify(userId: string, opts?: { token?: string }): void;
  /** Replace the signed user token (before the old one expires). */
  setUserToken(token: string | null): void;
  readonly userId: string;
  readonly userToken: string | null;
  readonly pending: number;
}

export function createRecommender(o: RecommenderOptions): Recommender;
