/**
 * The SFTP version 3 wire format (draft-ietf-secsh-filexfer-02), server side: constants,
 * a bounds-checked reader for request packets, encoders for replies, and a framer that cuts
 * the input byte stream into packets with a hard cap on their length.
 *
 *   packet  = uint32 length | byte type | payload        (length counts type + payload)
 *   request = uint32 request-id | fields…                 (every type but INIT)
 *   string  = uint32 n | n bytes
 *   uint64  = two uint32, big-endian
 *
 * Only what the restricted server needs is here; nothing in this file touches the disk.
 */

/** The protocol version this server speaks (and the only one). */
export const SFTP_VERSION = 3;

/** Packet types (filexfer-02 §3, plus the extension types). */
export const Packet = {
  INIT: 1,
  VERSION: 2,
  OPEN: 3,
  CLOSE: 4,
  READ: 5,
  WRITE: 6,
  LSTAT: 7,
  FSTAT: 8,
  SETSTAT: 9,
  FSETSTAT: 10,
  OPENDIR: 11,
  READDIR: 12,
  REMOVE: 13,
  MKDIR: 14,
  RMDIR: 15,
  REALPATH: 16,
  STAT: 17,
  RENAME: 18,
  READLINK: 19,
  SYMLINK: 20,
  STATUS: 101,
  HANDLE: 102,
  DATA: 103,
  NAME: 104,
  ATTRS: 105,
  EXTENDED: 200,
  EXTENDED_REPLY: 201,
} as const;

/** Status codes (filexfer-02 §7). */
export const Status = {
  OK: 0,
  EOF: 1,
  NO_SUCH_FILE: 2,
  PERMISSION_DENIED: 3,
  FAILURE: 4,
  BAD_MESSAGE: 5,
  NO_CONNECTION: 6,
  CONNECTION_LOST: 7,
  OP_UNSUPPORTED: 8,
} as const;
export type StatusCode = (typeof Status)[keyof typeof Status];

/** `pflags` of OPEN (filexfer-02 §6.3). */
export const OpenFlag = { READ: 0x01, WRITE: 0x02, APPEND: 0x04, CREAT: 0x08, TRUNC: 0x10, EXCL: 0x20 } as const;
export const KNOWN_OPEN_FLAGS = 0x3f;

/** Attribute flags (filexfer-02 §5). */
export const AttrFlag = { SIZE: 0x1, UIDGID: 0x2, PERMISSIONS: 0x4, ACMODTIME: 0x8, EXTENDED: 0x80000000 } as const;

/**
 * The largest packet accepted from the client, counted like the length field (type and
 * payload): 256 KiB of data plus room for the WRITE header (id, handle, offset, data length).
 * OpenSSH's sftp-server accepts 256 KiB; clients size their writes from the limits
 * advertised below, so a larger packet is a broken or hostile peer and ends the session.
 */
export const MAX_PACKET_BYTES = 256 * 1024 + 1024;

/**
 * The most bytes served by one READ. A larger request gets a short read (allowed by the
 * protocol). 255 KiB keeps the DATA reply under the 256 KiB packet cap of clients such as
 * ssh2, the same choice as OpenSSH's sftp-server.
 */
export const MAX_READ_BYTES = 255 * 1024;

/** The most bytes the server asks a client to put in one WRITE (limits@openssh.com). */
export const MAX_WRITE_BYTES = 255 * 1024;

/** Handles a session may hold open at once. */
export const MAX_OPEN_HANDLES = 64;

/** The longest path accepted in a request, in bytes (Linux's PATH_MAX). */
export const MAX_PATH_BYTES = 4096;

/** A request whose fields do not fit its packet, or break a field's own cap. */
export class MalformedPacket extends Error {
  constructor(message: string) {
    super(message);
    this.name = "MalformedPacket";
  }
}

/** A fault that leaves the byte stream unusable (the session must end). */
export class FatalProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "FatalProtocolError";
  }
}

/** Attributes as sent in SETSTAT, FSETSTAT and OPEN. */
export interface SftpAttrs {
  flags: number;
  size?: number;
  uid?: number;
  gid?: number;
  permissions?: number;
  atime?: number;
  mtime?: number;
}

/** Reads the fields of one packet's payload; every read is checked against the packet's end. */
export class PacketReader {
  readonly #buffer: Buffer;
  #offset: number;

  /** `buffer` holds the payload after the type byte. */
  constructor(buffer: Buffer) {
    this.#buffer = buffer;
    this.#offset = 0;
  }

  u32(what: string): number {
    if (this.#offset + 4 > this.#buffer.length) throw new MalformedPacket(`the packet ends before ${what}`);
    const value = this.#buffer.readUInt32BE(this.#offset);
    this.#offset += 4;
    return value;
  }

  /** A uint64 that must fit a JavaScript number exactly (offsets and sizes). */
  u64(what: string): number {
    if (this.#offset + 8 > this.#buffer.length) throw new MalformedPacket(`the packet ends before ${what}`);
    const value = this.#buffer.readBigUInt64BE(this.#offset);
    this.#offset += 8;
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new MalformedPacket(`${what} is larger than 2^53`);
    return Number(value);
  }

  /** A string's bytes (a view into the packet, not a copy), at most `maxBytes` long. */
  bytes(what: string, maxBytes: number): Buffer {
    const length = this.u32(`the length of ${what}`);
    if (length > maxBytes) throw new MalformedPacket(`${what} is ${length} bytes, over the cap of ${maxBytes}`);
    if (this.#offset + length > this.#buffer.length) throw new MalformedPacket(`${what} runs past the end of the packet`);
    const value = this.#buffer.subarray(this.#offset, this.#offset + length);
    this.#offset += length;
    return value;
  }

  /** A path: UTF-8, at most {@link MAX_PATH_BYTES}. Invalid UTF-8 is refused, not replaced. */
  path(what: string): string {
    const raw = this.bytes(what, MAX_PATH_BYTES);
    try {
      return UTF8.decode(raw);
    } catch {
      throw new MalformedPacket(`${what} is not valid UTF-8`);
    }
  }

  /** A handle string (this server's handles are 4 bytes; anything up to 256 is read, then looked up). */
  handle(): Buffer {
    return this.bytes("the handle", 256);
  }

  attrs(): SftpAttrs {
    const flags = this.u32("the attribute flags");
    const attrs: SftpAttrs = { flags };
    if (flags & AttrFlag.SIZE) attrs.size = this.u64("the size attribute");
    if (flags & AttrFlag.UIDGID) {
      attrs.uid = this.u32("the uid attribute");
      attrs.gid = this.u32("the gid attribute");
    }
    if (flags & AttrFlag.PERMISSIONS) attrs.permissions = this.u32("the permissions attribute");
    if (flags & AttrFlag.ACMODTIME) {
      attrs.atime = this.u32("the atime attribute");
      attrs.mtime = this.u32("the mtime attribute");
    }
    if (flags & AttrFlag.EXTENDED) {
      // Each pair is read (and so bounded by the packet) only to step over it.
      const count = this.u32("the extended attribute count");
      for (let i = 0; i < count; i++) {
        this.bytes("an extended attribute name", MAX_PACKET_BYTES);
        this.bytes("an extended attribute value", MAX_PACKET_BYTES);
      }
    }
    return attrs;
  }

  /** Whatever is left of the packet (the data of an extended request). */
  rest(): Buffer {
    return this.#buffer.subarray(this.#offset);
  }
}

const UTF8 = new TextDecoder("utf-8", { fatal: true });

/** File attributes as this server reports them (from an fs.Stats). */
export interface ReplyAttrs {
  size: number;
  uid: number;
  gid: number;
  mode: number;
  atimeMs: number;
  mtimeMs: number;
}

/** Appends fields to a reply, then frames it with its length. */
class ReplyWriter {
  readonly #parts: Buffer[] = [];
  #length = 0;

  constructor(type: number) {
    this.byte(type);
  }

  byte(value: number): this {
    return this.#push(Buffer.of(value));
  }

  u32(value: number): this {
    const buffer = Buffer.allocUnsafe(4);
    buffer.writeUInt32BE(value >>> 0);
    return this.#push(buffer);
  }

  u64(value: number): this {
    const buffer = Buffer.allocUnsafe(8);
    buffer.writeBigUInt64BE(BigInt(Math.max(0, Math.trunc(value))));
    return this.#push(buffer);
  }

  string(value: string | Buffer): this {
    const bytes = typeof value === "string" ? Buffer.from(value, "utf8") : value;
    this.u32(bytes.length);
    return this.#push(bytes);
  }

  attrs(attrs: ReplyAttrs | undefined): this {
    if (attrs === undefined) return this.u32(0);
    this.u32(AttrFlag.SIZE | AttrFlag.UIDGID | AttrFlag.PERMISSIONS | AttrFlag.ACMODTIME);
    this.u64(attrs.size);
    this.u32(attrs.uid).u32(attrs.gid).u32(attrs.mode);
    // SFTP v3 times are 32-bit seconds; they wrap in 2106.
    return this.u32(Math.floor(attrs.atimeMs / 1000)).u32(Math.floor(attrs.mtimeMs / 1000));
  }

  finish(): Buffer {
    const header = Buffer.allocUnsafe(4);
    header.writeUInt32BE(this.#length);
    return Buffer.concat([header, ...this.#parts], 4 + this.#length);
  }

  #push(buffer: Buffer): this {
    this.#parts.push(buffer);
    this.#length += buffer.length;
    return this;
  }
}

export function encodeVersion(extensions: readonly (readonly [string, string])[]): Buffer {
  const writer = new ReplyWriter(Packet.VERSION).u32(SFTP_VERSION);
  for (const [name, data] of extensions) writer.string(name).string(data);
  return writer.finish();
}

export function encodeStatus(id: number, code: StatusCode, message: string): Buffer {
  if (code === Status.OK) {
    // The most frequent reply (one per WRITE), built without the general writer.
    const reply = Buffer.from(OK_TEMPLATE);
    reply.writeUInt32BE(id, 5);
    return reply;
  }
  return new ReplyWriter(Packet.STATUS).u32(id).u32(code).string(message).string("en").finish();
}

const OK_TEMPLATE = new ReplyWriter(Packet.STATUS).u32(0).u32(Status.OK).string("ok").string("en").finish();

export function encodeHandle(id: number, handle: Buffer): Buffer {
  return new ReplyWriter(Packet.HANDLE).u32(id).string(handle).finish();
}

/**
 * A buffer for a DATA reply of up to `capacity` bytes: the payload goes at
 * {@link DATA_HEADER_BYTES}, then {@link finishData} fills the header. Reading straight into
 * the reply saves a copy of every block served.
 */
export function allocData(capacity: number): Buffer {
  return Buffer.allocUnsafe(DATA_HEADER_BYTES + capacity);
}

/** Where the payload starts in a buffer from {@link allocData}. */
export const DATA_HEADER_BYTES = 13;

/** Fills the header of a DATA reply built with {@link allocData} and trims it to `length`. */
export function finishData(reply: Buffer, id: number, length: number): Buffer {
  reply.writeUInt32BE(1 + 4 + 4 + length, 0);
  reply[4] = Packet.DATA;
  reply.writeUInt32BE(id, 5);
  reply.writeUInt32BE(length, 9);
  return reply.subarray(0, DATA_HEADER_BYTES + length);
}

export function encodeName(id: number, entries: readonly { filename: string; longname: string; attrs?: ReplyAttrs }[]): Buffer {
  const writer = new ReplyWriter(Packet.NAME).u32(id).u32(entries.length);
  for (const entry of entries) writer.string(entry.filename).string(entry.longname).attrs(entry.attrs);
  return writer.finish();
}

export function encodeAttrs(id: number, attrs: ReplyAttrs): Buffer {
  return new ReplyWriter(Packet.ATTRS).u32(id).attrs(attrs).finish();
}

/** The reply to limits@openssh.com: four uint64. */
export function encodeLimitsReply(id: number, limits: { packet: number; read: number; write: number; handles: number }): Buffer {
  return new ReplyWriter(Packet.EXTENDED_REPLY).u32(id).u64(limits.packet).u64(limits.read).u64(limits.write).u64(limits.handles).finish();
}

/**
 * Cuts a byte stream into packets. Chunks are kept as they arrive and joined only once a
 * whole packet is there, so a 256 KiB packet arriving in 64 KiB pieces is copied once.
 */
export class PacketFramer {
  readonly #chunks: Buffer[] = [];
  #buffered = 0;
  /** The length of the packet being assembled (after its 4-byte length), once known. */
  #need: number | undefined;

  /** Bytes held that are not yet part of a returned packet. */
  get buffered(): number {
    return this.#buffered;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
  }

  /**
   * The next whole packet (type byte first, length stripped), or undefined until more bytes
   * arrive.
   *
   * @throws FatalProtocolError when a length is zero or over {@link MAX_PACKET_BYTES}.
   */
  next(): Buffer | undefined {
    if (this.#need === undefined) {
      if (this.#buffered < 4) return undefined;
      const length = this.#peekLength();
      if (length < 1 || length > MAX_PACKET_BYTES) {
        throw new FatalProtocolError(`packet length ${length} is outside 1..${MAX_PACKET_BYTES}`);
      }
      this.#need = length;
    }
    const total = 4 + this.#need;
    if (this.#buffered < total) return undefined;
    const joined = this.#chunks.length === 1 ? this.#chunks[0] : Buffer.concat(this.#chunks, this.#buffered);
    const packet = joined.subarray(4, total);
    const rest = joined.subarray(total);
    this.#chunks.length = 0;
    if (rest.length > 0) this.#chunks.push(rest);
    this.#buffered = rest.length;
    this.#need = undefined;
    return packet;
  }

  #peekLength(): number {
    const first = this.#chunks[0];
    if (first.length >= 4) return first.readUInt32BE(0);
    const joined = Buffer.concat(this.#chunks, this.#buffered);
    this.#chunks.length = 0;
    this.#chunks.push(joined);
    return joined.readUInt32BE(0);
  }
}
