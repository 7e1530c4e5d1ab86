/** Module types for files wrangler bundles as data or compiled WebAssembly. */
declare module "*.onnx" {
  const bytes: ArrayBuffer;
  export default bytes;
}
declare module "*.bin" {
  const bytes: ArrayBuffer;
  export default bytes;
}
declare module "*.wasm" {
  const mod: WebAssembly.Module;
  export default mod;
}
