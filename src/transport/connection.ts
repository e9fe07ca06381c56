/**
 * What the client needs from a way of reaching the agent. Implemented by the local transport
 * (the agent as a child process, bundles copied through the staging folders) and by the SSH
 * transport (the agent over an exec channel, bundles over SFTP on the same connection), so
 * the sync code never knows which one it holds.
 *
 * Concurrency: `call` may be used concurrently (requests carry ids); `upload` and `download`
 * may run concurrently with calls. `close` may be called at any time and more than once.
 */
import type { Hello, MethodName, Params, Result } from "../protocol/messages.ts";

export interface TransferProgress {
  /** Bytes moved so far for this file. */
  bytes: number;
  /** Total bytes of this file. */
  total: number;
}

export interface TransferOptions {
  signal?: AbortSignal;
  onProgress?: (progress: TransferProgress) => void;
}

/** Options of {@link AgentConnection.downloadBytes}. */
export interface DownloadBytesOptions extends TransferOptions {
  /** The largest file accepted. */
  maxBytes: number;
  /**
   * A buffer to read into when the file fits: the result is then a view of its start. Lets a
   * caller that reads one bundle after another reuse a few buffers instead of allocating one
   * per bundle. Without it, or when the file does not fit, a new buffer is allocated.
   */
  into?: Buffer;
}

export interface WireCounters {
  /** Bytes this client sent to the server, protocol and bundles together. */
  sent: number;
  /** Bytes this client received from the server. */
  received: number;
}

export interface AgentConnection {
  /** The agent's handshake, already checked for protocol version. */
  readonly hello: Hello;
  /**
   * How the SSH connection logged in (`publickey`, `agent`, `password`, `keyboard-interactive`);
   * undefined for the local transport. Enrollment installs the device key after a password login.
   */
  readonly authMethod?: string;
  /** Sends one request and waits for its result, validated against the method's schema. */
  call<M extends MethodName>(method: M, params: Params<M>, options?: { signal?: AbortSignal }): Promise<Result<M>>;
  /** Copies a local file to `<staging.incoming>/<name>` on the server. */
  upload(localPath: string, name: string, options?: TransferOptions): Promise<void>;
  /** Copies `<staging.outgoing>/<name>` from the server to a local file. */
  download(name: string, localPath: string, options?: TransferOptions): Promise<void>;
  /**
   * Reads `<staging.outgoing>/<name>` from the server into memory; a file larger than
   * `maxBytes` is refused (FRAME_TOO_LARGE) before it is read.
   */
  downloadBytes(name: string, options: DownloadBytesOptions): Promise<Buffer>;
  /** Bytes on the wire so far (for the local transport: what would have crossed it). */
  counters(): WireCounters;
  /** Ends the session: closes channels and waits for the agent to exit. */
  close(): Promise<void>;
}
