/**
 * Worker vars and secrets for `wrangler dev` in a private file (`--env-file`), never on its
 * command line: arguments are visible to every user of the machine in `ps`, a 0600 file in a
 * 0700 folder only to its owner. The file lives while the worker runs (`remove()` when it stops).
 *
 * Format: dotenv as wrangler reads it (dotenv, then dotenv-expand): each value single-quoted
 * (taken literally), with every `$` written `\$` so that nothing is expanded.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** One `NAME='value'` line; throws for a value dotenv cannot carry literally. */
export function envLine(name: string, value: string): string {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new Error(`not a var name: ${JSON.stringify(name)}`);
  if (value.includes("'") || /[\r\n]/.test(value)) throw new Error(`${name}: a value with a single quote or a line break cannot be passed to wrangler dev`);
  return `${name}='${value.replaceAll("$", "\\$")}'`;
}

/** Write `vars` to a fresh 0600 file in a fresh 0700 folder under the system's temp folder. */
export function writeEnvFile(vars: Record<string, string>): { path: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), "gru-worker-env-"));
  const path = join(dir, "worker.env");
  writeFileSync(path, `${Object.entries(vars).map(([k, v]) => envLine(k, v)).join("\n")}\n`, { mode: 0o600 });
  return { path, remove: () => rmSync(dir, { recursive: true, force: true }) };
}
