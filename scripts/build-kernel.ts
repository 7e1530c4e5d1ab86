/**
 * Build the int8 scan kernel: src/model/kernel/scan.wat -> scan.wasm (the npm package wabt; SIMD on).
 * The .wasm is committed, since workerd runs only modules it bundles (it compiles no bytes at run
 * time); test/node/int8-scan.test.ts checks that it is this build of the .wat.
 *
 *     npm run build:kernel
 */
import { readFileSync, writeFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import wabtInit from "wabt";

/** Where the kernel's source and build live. */
export const KERNEL_WAT = new URL("../src/model/kernel/scan.wat", import.meta.url);
export const KERNEL_WASM = new URL("../src/model/kernel/scan.wasm", import.meta.url);

/** The binary module of a WebAssembly text module (validated; no names section, so the bytes are
 * the same on every machine). */
export async function assemble(wat: string, file = "scan.wat"): Promise<Uint8Array> {
  const wabt = await wabtInit();
  const mod = wabt.parseWat(file, wat, { simd: true });
  try {
    mod.validate();
    return new Uint8Array(mod.toBinary({ log: false, write_debug_names: false }).buffer);
  } finally {
    mod.destroy();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const bytes = await assemble(readFileSync(KERNEL_WAT, "utf8"));
  writeFileSync(KERNEL_WASM, bytes);
  console.log(`wrote src/model/kernel/scan.wasm (${bytes.byteLength} bytes)`);
}
