/**
 * onnxruntime-web (WASM backend) set up for workerd, which refuses to compile WebAssembly from
 * bytes: the caller hands us a precompiled `WebAssembly.Module` (wrangler imports `.wasm` files as
 * modules) and ORT's own instantiation is pointed at it. Single-threaded, no proxy worker.
 * Initialisation happens once per isolate.
 */
import * as ort from "onnxruntime-web/wasm";

export type Ort = typeof ort;

let ready: Promise<void> | undefined;

let tail: Promise<unknown> = Promise.resolve();

/**
 * Run `fn` (session creations, runs with the reading of their outputs, releases) after every
 * earlier one of this isolate has finished. All sessions of an isolate share one ORT wasm instance,
 * whose calls are not re-entrant across sessions: a run lays its inputs' and outputs' pointers out
 * on the one wasm stack around an `await`, so two runs interleaved (the item shards of one request,
 * which share an isolate; two live versions under A/B) corrupt each other ("failed to call
 * OrtRun()", "null function or function signature mismatch": test/node/ort-exclusive.test.ts).
 * `fn` must not itself wait for another `exclusive` call.
 */
export function exclusive<T>(fn: () => Promise<T>): Promise<T> {
  const run = tail.then(fn, fn);
  tail = run.catch(() => undefined);
  return run;
}

/**
 * Run `create` (which makes ORT initialise its wasm on first use) with ORT's wasm instantiation
 * answered from `wasmModule`, then under `exclusive`. Later calls skip the redirection.
 */
export async function withOrt<T>(wasmModule: WebAssembly.Module, create: (o: Ort) => Promise<T>): Promise<T> {
  if (!ready) {
    ready = (async () => {
      ort.env.wasm.numThreads = 1;
      ort.env.wasm.proxy = false;
      ort.env.logLevel = "error";
      // A non-empty placeholder makes ORT take its "binary provided" path; the bytes are never
      // compiled because instantiate below substitutes the precompiled module.
      ort.env.wasm.wasmBinary = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0]);
      const wa = WebAssembly as unknown as { instantiate: (...a: unknown[]) => Promise<unknown> };
      const original = wa.instantiate;
      wa.instantiate = async (source: unknown, imports: unknown) => {
        if (source instanceof WebAssembly.Module) return original.call(WebAssembly, source, imports);
        const instance = await original.call(WebAssembly, wasmModule, imports);
        return { instance, module: wasmModule };
      };
      try {
        // A throwaway session forces ORT's one-time wasm initialisation now.
        await ort.InferenceSession.create(TINY_IDENTITY_MODEL).then((s) => s.release());
      } finally {
        wa.instantiate = original;
      }
    })();
    ready.catch(() => (ready = undefined));
  }
  await ready;
  return exclusive(() => create(ort));
}

/** ONNX model `y = Identity(x)`, float [1]; 65 bytes, used only to initialise ORT. */
const TINY_IDENTITY_MODEL = new Uint8Array([
  0x08, 0x08, 0x3a, 0x37, 0x0a, 0x10, 0x0a, 0x01, 0x78, 0x12, 0x01, 0x79, 0x22, 0x08, 0x49, 0x64, 0x65, 0x6e,
  0x74, 0x69, 0x74, 0x79, 0x12, 0x01, 0x67, 0x5a, 0x0f, 0x0a, 0x01, 0x78, 0x12, 0x0a, 0x0a, 0x08, 0x08, 0x01,
  0x12, 0x04, 0x0a, 0x02, 0x08, 0x01, 0x62, 0x0f, 0x0a, 0x01, 0x79, 0x12, 0x0a, 0x0a, 0x08, 0x08, 0x01, 0x12,
  0x04, 0x0a, 0x02, 0x08, 0x01, 0x42, 0x04, 0x0a, 0x00, 0x10, 0x0d,
]);
