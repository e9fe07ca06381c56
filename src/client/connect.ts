/**
 * Opens a session with the server for a command: picks the transport from the client state
 * (SSH in real use, the local child-process agent for the demo and tests) and binds the
 * session to this device. Every command goes through here, so the sync code never knows
 * which transport it holds.
 */
import type { AgentConnection } from "../transport/connection.ts";
import { connectLocal } from "../transport/local.ts";
import { askSecret } from "../terminal/prompt.ts";
import type { ServerTarget, StateStore } from "./state.ts";
import { homedir } from "node:os";
import { join } from "node:path";

export interface ConnectOptions {
  signal?: AbortSignal;
  /** Asks for a key's passphrase when an encrypted key is used (interactive commands). */
  askPassphrase?: (keyPath: string, attempt: number) => Promise<string | undefined>;
  /** Enrollment only: asks whether to trust an unknown host key (shown as SHA256:…). */
  trustOnFirstUse?: (fingerprint: string, details: { host: string; port: number; algorithm: string }) => Promise<boolean>;
  /** Enrollment only: an SSH password, used once (or a prompt, asked only when every key was refused). */
  password?: string | (() => Promise<string | undefined>);
}

/** Connects without identifying a device (enrollment). */
export async function connectTarget(target: ServerTarget, options: ConnectOptions = {}): Promise<AgentConnection> {
  if (target.transport === "local") return connectLocal({ dataDir: target.dataDir }, { signal: options.signal });
  const [{ connectSsh }, { DEFAULT_IDENTITY_FILE_NAMES }] = await Promise.all([import("../transport/ssh.ts"), import("../transport/ssh-config.ts")]);
  return connectSsh(
    {
      host: target.host,
      port: target.port,
      user: target.user,
      identityFiles: identityFilesOf(target, DEFAULT_IDENTITY_FILE_NAMES),
      defaultIdentityFiles: target.identityFiles.length === 0,
      identitiesOnly: target.identitiesOnly,
      agents: target.useAgents ? undefined : false,
      knownHostsPath: target.knownHostsPath,
      agentCommand: target.agentCommand,
      passphrase: options.askPassphrase ?? askKeyPassphrase,
      trustOnFirstUse: options.trustOnFirstUse,
      password: options.password,
    },
    { signal: options.signal },
  );
}

/**
 * The key files to try: the ones recorded at enrollment (from --identity or ~/.ssh/config's
 * IdentityFile), else OpenSSH's default key files in its order, which ssh tries without being
 * told (missing ones are skipped silently).
 */
export function identityFilesOf(target: Extract<ServerTarget, { transport: "ssh" }>, defaultNames: readonly string[], home: string = homedir()): string[] {
  if (target.identityFiles.length > 0) return target.identityFiles;
  return defaultNames.map((name) => join(home, ".ssh", name));
}

/** Asks for a key's passphrase on the terminal; without one, the key is skipped. */
async function askKeyPassphrase(keyPath: string, attempt: number): Promise<string | undefined> {
  if (!process.stdin.isTTY) return undefined;
  return askSecret(`Passphrase for ${keyPath}${attempt > 1 ? " (try again)" : ""}`, { allowEmpty: true });
}

/** Connects and binds the session to this enrolled device. */
export async function connectAsDevice(state: StateStore, options: ConnectOptions = {}): Promise<AgentConnection> {
  const { device, server } = state.enrolled();
  const conn = await connectTarget(server, options);
  try {
    await conn.call("open", { deviceId: device.id }, { signal: options.signal });
    return conn;
  } catch (error) {
    await conn.close();
    throw error;
  }
}
