/**
 * Enrollment: register this device with the server, proven by the server's secondary
 * passphrase, and remember how to reach the server. The passphrase is used once and never
 * stored on the device.
 */
import { hostname } from "node:os";
import { CwsError } from "../../errors.ts";
import type { ServerTarget, StateStore } from "../state.ts";
import { connectTarget, type ConnectOptions } from "../connect.ts";

export interface EnrollOptions {
  target: ServerTarget;
  deviceName?: string;
  passphrase: string;
  keyFingerprint?: string;
  /** Replace an existing enrollment of this device. */
  force?: boolean;
  /** The device key's public line. */
  publicKey?: string;
  /**
   * Restrict the key to cws on the server: true also when it logs in already, false never;
   * undefined restricts it only when it is installed after a password login.
   */
  restrictKey?: boolean;
}

export async function enrollDevice(state: StateStore, options: EnrollOptions, connectOptions: ConnectOptions = {}): Promise<{ deviceId: string; deviceName: string; agentVersion: string; keyInstalled?: { file: string; replaced: number; restricted: boolean } }> {
  if (state.data.device !== null && !options.force) {
    throw new CwsError("ALREADY_EXISTS", `This device is already enrolled as ${state.data.device.name} (${state.data.device.id}). Pass --force to enroll it again.`);
  }
  const deviceName = (options.deviceName ?? hostname()).trim();
  if (deviceName === "" || deviceName.length > 128) throw new CwsError("INVALID_ARGUMENT", "The device name must have 1 to 128 characters.");
  const conn = await connectTarget(options.target, connectOptions);
  try {
    // After a password login the key does not log in yet: install it, as ssh-copy-id would.
    const installKey = options.publicKey !== undefined && (conn.authMethod === "password" || conn.authMethod === "keyboard-interactive");
    const restrictKey = options.publicKey !== undefined && (options.restrictKey ?? installKey);
    const { deviceId, keyInstalled } = await conn.call("enroll", {
      deviceName, passphrase: options.passphrase, keyFingerprint: options.keyFingerprint, publicKey: options.publicKey,
      restrictKey, installKey, replacesDeviceId: state.data.device?.id,
    });
    await state.update((s) => {
      s.device = { id: deviceId, name: deviceName };
      s.server = options.target;
    });
    return { deviceId, deviceName, agentVersion: conn.hello.version, keyInstalled };
  } finally {
    await conn.close();
  }
}
