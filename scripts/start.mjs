// `npm start` entry: check the Node version before any TypeScript is loaded (Node runs .ts files
// itself from 22.18 on; older ones fail with ERR_UNKNOWN_FILE_EXTENSION), then run start.ts.
// Plain old JavaScript on purpose, so that even an old Node can say what to install.
var v = process.versions.node.split(".").map(Number);
if (!(v[0] > 22 || (v[0] === 22 && v[1] >= 18))) {
  console.error(
    "gru-edge-recommender needs Node.js 22.18 or newer (this is v" + process.versions.node + "): install Node 22, e.g. `nvm install` (reads .nvmrc) or https://nodejs.org/en/download",
  );
  process.exit(1);
}
await import("./start.ts");
