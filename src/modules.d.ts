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
/** Swagger UI's files, bundled as text (wrangler.toml rules) and served by src/routes/docs.ts. */
declare module "swagger-ui-dist/swagger-ui.css" {
  const text: string;
  export default text;
}
declare module "swagger-ui-dist/swagger-ui-bundle.js" {
  const text: string;
  export default text;
}
