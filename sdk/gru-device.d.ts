/** Types of the on-device scorer (sdk/gru-device.js). */
export interface DeviceOptions {
  /** Base URL of the recommender worker. */
  endpoint: string;
  /** A publishable key. */
  key: string;
  /** The identified customer's signed user token (reading their state needs it). */
  userToken?: string;
  /** "auto" (default): WebGPU when the browser has it, else WASM; "webgpu" fails without it. */
  backend?: "auto" | "webgpu" | "wasm";
  /** Where onnxruntime-web's files are served (the demo serves them at /vendor/ort/). */
  ortBase?: string;
  /** Keep the model files in Cache Storage ("gru-model"). Default true. */
  cache?: boolean;
  /** Recent items remembered before the first sync. Default 20 (the worker's RECENT_RING). */
  ringCapacity?: number;
  fetch?: typeof fetch;
  /** Clock, ms since the epoch. Default Date.now. */
  now?: () => number;
}

export interface DeviceItem {
  item_id: string;
  score: number;
  source: "device";
}

export interface DeviceRecommendations {
  items: DeviceItem[];
  source: "device";
  reason?: "cold-user" | "unknown-item";
  backend: "webgpu" | "wasm";
  model_version: string;
  /** Time of the ranking, ms. */
  ms?: number;
}

export interface DeviceStateSummary {
  user_id: string | null;
  event_count: number;
  session_count: number;
  last_event_ms: number;
  recent: string[];
  /** "api": as read; "device": advanced here since; "empty": no state yet. */
  source: "api" | "device" | "empty";
}

export interface GoldenCheck {
  max_state_diff: number;
  max_score_diff: number;
  topk_equal: boolean;
  similar_equal: boolean | null;
  tolerance: number;
}

export interface DeviceScorer {
  readonly backend: "webgpu" | "wasm";
  readonly fallback: string | null;
  readonly version: string;
  readonly manifest: Record<string, unknown>;
  /** load_ms: files and sessions; step_ms, rank_ms: every step and ranking so far, ms. */
  readonly timings: { load_ms: number; step_ms: number[]; rank_ms: number[] };
  /** Read the user's state from the API; an identified customer's needs their signed user token. */
  sync(userId?: string, opts?: { token?: string | null }): Promise<DeviceStateSummary>;
  observe(e: { user_id: string; item_id: string; type: string; timestamp?: number }): Promise<void>;
  setCatalog(items: { id: string; available?: boolean }[]): void;
  recommend(o?: { k?: number; exclude?: string[]; excludeRecent?: boolean; at?: number }): Promise<DeviceRecommendations>;
  similar(itemId: string, o?: { k?: number; exclude?: string[] }): Promise<DeviceRecommendations>;
  checkGolden(golden: unknown): Promise<GoldenCheck>;
  readonly state: DeviceStateSummary;
}

export function createDeviceScorer(o: DeviceOptions): Promise<DeviceScorer>;
export function percentile(xs: number[], q: number): number;
