/**
 * ItemShard: the Durable Object that holds one row range of a sharded model's item table and
 * answers masked top-k queries over it (src/model/shards.ts has the protocol and the merge,
 * shard-sessions.ts the sessions and runs). Failures are answered as values (`{error}`), which the
 * worker turns into ShardUnavailableError and a `model-unavailable` degradation.
 */
import { DurableObject } from "cloudflare:workers";
import { bundledScan, bundledWasm } from "./registry";
import { readRows, runShard, shardSessions } from "./shard-sessions";
import type { Boost, ShardAnswer, ShardRows, ShardSpec } from "./shards";

/** The Durable Object class bound as ITEM_SHARDS (wrangler.toml); RPC methods only. */
export class ItemShard extends DurableObject<{ MODEL_BUCKET?: R2Bucket }> {
  private sessions(spec: ShardSpec) {
    const bucket = this.env.MODEL_BUCKET;
    if (!bucket) throw new Error("item shards need MODEL_BUCKET (R2) for their files");
    return shardSessions(bucket, spec, bundledWasm(), bundledScan());
  }

  private async answer(graph: "score" | "similar", spec: ShardSpec, vec: Float32Array, mask: Uint8Array, k: number, boost?: Boost): Promise<ShardAnswer> {
    try {
      return await runShard(await this.sessions(spec), graph, spec, vec, mask, k, boost);
    } catch (e) {
      return { error: (e as Error).message };
    }
  }

  /** This shard's rows `local` of the table (`dim` floats each); `normalized`: as a similar-items seed. */
  async rows(spec: ShardSpec, local: Int32Array, normalized: boolean): Promise<ShardRows> {
    try {
      return { vectors: readRows(await this.sessions(spec), spec, local, normalized) };
    } catch (e) {
      return { error: (e as Error).message };
    }
  }

  /** The k best rows of this shard for query `q` (scores q . e + b, plus `boost` where given), never a masked row. */
  async score(spec: ShardSpec, q: Float32Array, mask: Uint8Array, k: number, boost?: Boost): Promise<ShardAnswer> {
    return this.answer("score", spec, q, mask, k, boost);
  }

  /** The k rows of this shard closest to `vec` (a normalised item vector) by cosine, never a masked row. */
  async similar(spec: ShardSpec, vec: Float32Array, mask: Uint8Array, k: number): Promise<ShardAnswer> {
    return this.answer("similar", spec, vec, mask, k);
  }
}
