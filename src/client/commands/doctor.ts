/**
 * `cws doctor`: checks what commonly goes wrong, one line each, with the fix. It never
 * changes anything.
 */
import { statfs } from "node:fs/promises";
import { existsSync } from "node:fs";
import { PACKAGE_VERSION, PROTOCOL_VERSION } from "../../version.ts";
import { isCwsError } from "../../errors.ts";
import { StateStore } from "../state.ts";
import { connectAsDevice } from "../connect.ts";

export interface Check {
  name: string;
  ok: boolean;
  detail: string;
  fix?: string;
}

export async function runDoctor(home?: string): Promise<Check[]> {
  const checks: Check[] = [];
  const major = Number(process.versions.node.split(".")[0]);
  checks.push({ name: "node", ok: major >= 24, detail: `Node ${process.versions.node}`, fix: major >= 24 ? undefined : "Run cws through npm scripts or node_modules/.bin/node (Node 24 is a devDependency)." });
  let state: StateStore;
  try {
    state = await StateStore.open(home);
    checks.push({ name: "state", ok: true, detail: `client state in ${state.home}` });
  } catch (error) {
    checks.push({ name: "state", ok: false, detail: (error as Error).message, fix: "Restore the state file from a backup, or move it away and enroll again." });
    return checks;
  }
  try {
    const { free } = await diskSpace(state.home);
    checks.push({ name: "disk", ok: free > 512 * 1024 * 1024, detail: `${Math.round(free / 1024 / 1024)} MiB free for state and backups`, fix: free > 512 * 1024 * 1024 ? undefined : "Free some space: pulls need room for temp files and backups." });
  } catch {
    // statfs is not available everywhere; not worth a failed check.
  }
  if (state.data.device === null) {
    checks.push({ name: "enrollment", ok: false, detail: "this device is not enrolled", fix: "Run `cws enroll-device`." });
    return checks;
  }
  checks.push({ name: "enrollment", ok: true, detail: `device ${state.data.device.name} (${state.data.device.id})` });
  if (state.data.server?.transport === "ssh") {
    for (const file of state.data.server.identityFiles) {
      if (!existsSync(file)) checks.push({ name: "ssh key", ok: false, detail: `${file} is missing`, fix: "Restore the key or enroll again with another key." });
    }
  }
  const started = performance.now();
  try {
    const conn = await connectAsDevice(state);
    const roundTrip = performance.now() - started;
    try {
      checks.push({ name: "server", ok: true, detail: `reachable, session opened in ${Math.round(roundTrip)} ms` });
      const same = conn.hello.protocol === PROTOCOL_VERSION;
      checks.push({ name: "agent", ok: same, detail: `server cws ${conn.hello.version} (protocol ${conn.hello.protocol}), this device cws ${PACKAGE_VERSION}`, fix: same ? undefined : "Install the same cws version on both sides." });
      const lease = await conn.call("leaseStatus", {});
      const skew = Math.abs(lease.now - Date.now());
      checks.push({ name: "clock", ok: skew < 60_000, detail: `hub clock differs from this device's by ${Math.round(skew / 1000)} s`, fix: skew < 60_000 ? undefined : "Enable time sync (NTP) on the server and this device; lease times are shown in the hub's clock." });
      const { superprojects } = await conn.call("listSuperprojects", {});
      for (const [slug, bound] of Object.entries(state.data.superprojects)) {
        const onServer = superprojects.some((s) => s.slug === slug);
        const folder = existsSync(bound.root);
        checks.push({
          name: `superproject ${slug}`,
          ok: onServer && folder,
          detail: `${bound.root}${folder ? "" : " (missing)"}; ${onServer ? "on the server" : "not on the server"}`,
          fix: !folder ? `Recreate the folder or \`cws disconnect-superproject ${slug}\`.` : !onServer ? `\`cws disconnect-superproject ${slug}\` or create it again.` : undefined,
        });
      }
    } finally {
      await conn.close();
    }
  } catch (error) {
    checks.push({ name: "server", ok: false, detail: isCwsError(error) ? `${error.code}: ${error.message}` : String(error), fix: "Check the network, the SSH key and the agent command (`cws status` shows the server)." });
  }
  return checks;
}

async function diskSpace(path: string): Promise<{ free: number }> {
  const stats = await statfs(path);
  return { free: stats.bavail * stats.bsize };
}
