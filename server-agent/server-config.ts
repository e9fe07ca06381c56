/**
 * The server's own configuration file, `<data>/server.json`: the scrypt hash of the secondary
 * passphrase and the hub's settings. Written by `cws-server init`, read by the hub. The
 * passphrase itself is never stored and never passed on a command line.
 */
import { randomBytes, scrypt as scryptCallback, timingSafeEqual } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { CwsError } from "../src/errors.ts";
import { writeFileAtomic } from "../src/fs-atomic.ts";

/** scrypt cost parameters: N=2^15, r=8, p=1 takes ~50–100 ms and 32 MiB, fine for enrollment. */
const SCRYPT = { N: 1 << 15, r: 8, p: 1, keyLength: 32, maxmem: 64 * 1024 * 1024 } as const;

export const ServerConfig = z.object({
  format: z.literal(1),
  passphrase: z.object({
    algorithm: z.literal("scrypt"),
    N: z.number().int().positive(),
    r: z.number().int().positive(),
    p: z.number().int().positive(),
    salt: z.string().regex(/^[0-9a-f]{32,}$/),
    hash: z.string().regex(/^[0-9a-f]{64}$/),
  }),
  // leaseTtlMs is how long a lease lives without a heartbeat (DESIGN: 120 s).
  leaseTtlMs: z.number().int().min(1000).max(24 * 3600 * 1000).default(120_000),
  // hubIdleExitMs stops a hub that an agent started once nobody has used it for this long.
  hubIdleExitMs: z.number().int().min(0).default(10 * 60 * 1000),
});
export type ServerConfig = z.infer<typeof ServerConfig>;

export function serverConfigPath(dataDir: string): string {
  return join(dataDir, "server.json");
}

function scrypt(passphrase: string, salt: Buffer, params: { N: number; r: number; p: number }): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scryptCallback(passphrase.normalize("NFC"), salt, SCRYPT.keyLength, { ...params, maxmem: SCRYPT.maxmem }, (error, key) =>
      error ? reject(error) : resolve(key),
    );
  });
}

export async function hashPassphrase(passphrase: string): Promise<ServerConfig["passphrase"]> {
  const salt = randomBytes(16);
  const key = await scrypt(passphrase, salt, SCRYPT);
  return { algorithm: "scrypt", N: SCRYPT.N, r: SCRYPT.r, p: SCRYPT.p, salt: salt.toString("hex"), hash: key.toString("hex") };
}

export async function verifyPassphrase(passphrase: string, stored: ServerConfig["passphrase"]): Promise<boolean> {
  const key = await scrypt(passphrase, Buffer.from(stored.salt, "hex"), stored);
  const expected = Buffer.from(stored.hash, "hex");
  return key.length === expected.length && timingSafeEqual(key, expected);
}

export async function readServerConfig(dataDir: string): Promise<ServerConfig> {
  const path = serverConfigPath(dataDir);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") {
      throw new CwsError("NOT_FOUND", `The server data dir ${dataDir} is not initialised (no server.json). Run \`cws-server init --data ${dataDir}\` first.`);
    }
    throw error;
  }
  const parsed = ServerConfig.safeParse(JSON.parse(text));
  if (!parsed.success) {
    throw new CwsError("INVALID_ARGUMENT", `${path} is not a valid cws server config: ${parsed.error.issues[0]?.path.join(".")}: ${parsed.error.issues[0]?.message}. Restore it from a backup or run \`cws-server init --force\`.`);
  }
  return parsed.data;
}

export async function writeServerConfig(dataDir: string, config: ServerConfig): Promise<void> {
  await writeFileAtomic(serverConfigPath(dataDir), JSON.stringify(config, null, 2) + "\n", { mode: 0o600 });
}

/** The data dir when none is given: $CWS_DATA_DIR, else $XDG_DATA_HOME/cws-server, else ~/.local/share/cws-server. */
export { defaultServerDataDir } from "./data-dir.ts";
