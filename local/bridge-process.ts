/**
 * The Upstash REST bridge in its own Node process, so that a load generator in the calling process
 * does not share an event loop with it, and its CPU time can be read apart (/proc/<pid>/stat).
 * Run directly: `node local/bridge-process.ts <redisPort> <token>` prints `listening <url>`.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { startBridge } from "./redis-bridge.ts";

export interface BridgeProcess {
  url: string;
  pid: number;
  close(): Promise<void>;
}

/** Start the bridge in a child process in front of redis-server on `redisPort`. */
export async function startBridgeProcess(o: { redisPort: number; token: string }): Promise<BridgeProcess> {
  const child: ChildProcess = spawn(process.execPath, [fileURLToPath(import.meta.url), String(o.redisPort), o.token], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const url = await new Promise<string>((resolve, reject) => {
    let out = "";
    child.stdout!.on("data", (d) => {
      out += d;
      const m = /listening (\S+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    child.once("exit", (code) => reject(new Error(`bridge process exited (${code})`)));
  });
  return {
    url,
    pid: child.pid!,
    close: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once("exit", () => resolve());
        child.kill("SIGTERM");
      }),
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const bridge = await startBridge({ redisPort: Number(process.argv[2]), token: process.argv[3]!, port: 0 });
  console.log(`listening ${bridge.url}`);
  const stop = () => void bridge.close().then(() => process.exit(0));
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}
