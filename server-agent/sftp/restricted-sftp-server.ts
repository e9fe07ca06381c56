/**
 * A small SFTP version 3 server (draft-ietf-secsh-filexfer-02) that serves only the staging
 * folders of a cws data dir. It runs behind the forced command of a device's SSH key, where
 * OpenSSH's own sftp-server cannot be used: that one reaches every file of the account, and
 * confining it to a folder needs a chroot, which only root can set up.
 *
 * What a client may do (everything else is answered PERMISSION_DENIED with the rule, or
 * OP_UNSUPPORTED for operations this server does not implement):
 *
 *   staging/incoming   open for writing (create, truncate, append, exclusive; read+write is
 *                      allowed for resuming, but READ is refused: uploads are not read back),
 *                      write, fstat/stat/lstat, setstat of size and permissions, rename and
 *                      posix-rename@openssh.com within the folder, remove, fsync@openssh.com
 *   staging/outgoing   open for reading, read, fstat/stat/lstat, remove
 *   both folders       realpath, stat, opendir/readdir (regular files only)
 *
 * Every path goes through staging-jail.ts (direct children with bundle names only), every
 * file is opened with O_NOFOLLOW and O_NONBLOCK and checked to be a regular file (so a
 * symlink or FIFO planted there is refused), and files opened for writing must have a single
 * link (so a hard link planted in incoming cannot carry writes to a file elsewhere). Lengths
 * from the client are capped (sftp-wire.ts): packets, READ lengths, paths, open handles and
 * the size of a staged file.
 *
 * Requests are served one at a time, in order, with synchronous file calls: the process
 * serves one SSH channel and nothing else, ordering stays trivially correct (a CLOSE never
 * overtakes a WRITE), and it avoids a thread-pool hop per request. When the output cannot
 * take more, input is paused until it drains, so memory stays bounded whatever the client
 * pipelines.
 */
import fs from "node:fs";
import type { Readable, Writable } from "node:stream";
import {
  allocData,
  DATA_HEADER_BYTES,
  encodeAttrs,
  finishData,
  encodeHandle,
  encodeLimitsReply,
  encodeName,
  encodeStatus,
  encodeVersion,
  FatalProtocolError,
  KNOWN_OPEN_FLAGS,
  MalformedPacket,
  MAX_OPEN_HANDLES,
  MAX_PACKET_BYTES,
  MAX_READ_BYTES,
  MAX_WRITE_BYTES,
  OpenFlag,
  AttrFlag,
  Packet,
  PacketFramer,
  PacketReader,
  Status,
  type ReplyAttrs,
  type SftpAttrs,
  type StatusCode,
} from "./sftp-wire.ts";
import { JailRefusal, openStagingJail, type JailTarget, type StagingArea, type StagingJail } from "./staging-jail.ts";

export interface RestrictedSftpOptions {
  /** The server data dir; its `staging/incoming` and `staging/outgoing` must exist. */
  dataDir: string;
  input: Readable;
  output: Writable;
  /** Where refusals and faults are reported (sshd passes stderr to the client). */
  log?: (line: string) => void;
  /**
   * The largest file a client may make in incoming, in bytes. Bundles are at most 32 MiB
   * (docs/architecture.md); the cap leaves room and stops a sparse-file or disk-filling write.
   *
   * @default {MAX_STAGED_FILE_BYTES}
   */
  maxFileBytes?: number;
}

/** Default cap on a staged file's size. */
export const MAX_STAGED_FILE_BYTES = 1024 * 1024 * 1024;

/** Log lines per session; a hostile client must not be able to flood the channel's stderr. */
const MAX_LOG_LINES = 32;

/** Names returned per READDIR reply. */
const READDIR_BATCH = 100;
/** Entries a directory listing holds at most. */
const MAX_LISTED_ENTRIES = 10_000;

/** Extensions this server implements, announced in VERSION. */
const EXTENSIONS = [
  ["posix-rename@openssh.com", "1"],
  ["fsync@openssh.com", "1"],
  ["limits@openssh.com", "1"],
] as const;

/** Errors a request answers with a STATUS; anything else is a bug and ends the session. */
class RequestFailure extends Error {
  readonly status: StatusCode;
  constructor(status: StatusCode, message: string) {
    super(message);
    this.status = status;
  }
}

const denied = (message: string): RequestFailure => new RequestFailure(Status.PERMISSION_DENIED, message);

type OpenFile = {
  kind: "file";
  fd: number;
  area: StagingArea;
  name: string;
  readable: boolean;
  writable: boolean;
  /** Opened with APPEND: every write lands at the end, whatever its offset says. */
  append: boolean;
};
type OpenDir = { kind: "dir"; area: StagingArea; fsPath: string; listing: string[] | undefined; next: number };
type Handle = OpenFile | OpenDir;

/**
 * Serves one SFTP session on `input`/`output` until the input ends or the client breaks the
 * protocol; open files are closed either way.
 *
 * @throws Error when the staging folders are missing (before anything is read).
 */
export function serveRestrictedSftp(options: RestrictedSftpOptions): Promise<void> {
  const jail = openStagingJail(options.dataDir);
  const session = new Session(jail, options);
  return session.run();
}

class Session {
  readonly #jail: StagingJail;
  readonly #input: Readable;
  readonly #output: Writable;
  readonly #log: (line: string) => void;
  readonly #maxFileBytes: number;
  readonly #framer = new PacketFramer();
  readonly #handles = new Map<number, Handle>();
  #nextHandle = 1;
  #initialised = false;
  #waitingForDrain = false;
  #finished = false;
  #logLines = 0;
  #resolve: () => void = () => {};

  constructor(jail: StagingJail, options: RestrictedSftpOptions) {
    this.#jail = jail;
    this.#input = options.input;
    this.#output = options.output;
    this.#log = options.log ?? ((line) => process.stderr.write(`cws-sftp: ${line}\n`));
    this.#maxFileBytes = options.maxFileBytes ?? MAX_STAGED_FILE_BYTES;
  }

  run(): Promise<void> {
    return new Promise((resolve) => {
      this.#resolve = resolve;
      this.#input.on("data", (chunk: Buffer) => {
        this.#framer.push(chunk);
        this.#pump();
      });
      this.#input.once("end", () => this.#finish());
      this.#input.once("error", (error) => this.#finish(`input failed: ${error.message}`));
      this.#output.once("error", (error) => this.#finish(`output failed: ${error.message}`));
      this.#output.once("close", () => this.#finish());
    });
  }

  /** Serves every whole packet there is, unless the output asked us to wait. */
  #pump(): void {
    try {
      while (!this.#waitingForDrain && !this.#finished) {
        const packet = this.#framer.next();
        if (packet === undefined) break;
        const reply = this.#serve(packet);
        if (reply !== undefined && !this.#output.write(reply)) {
          this.#waitingForDrain = true;
          this.#input.pause();
          this.#output.once("drain", () => {
            this.#waitingForDrain = false;
            this.#input.resume();
            this.#pump();
          });
        }
      }
    } catch (error) {
      if (error instanceof FatalProtocolError) this.#finish(`ending the session: ${error.message}`);
      else this.#finish(`ending the session after an unexpected failure: ${(error as Error)?.stack ?? String(error)}`);
    }
  }

  #finish(reason?: string): void {
    if (this.#finished) return;
    this.#finished = true;
    if (reason !== undefined) this.#say(reason, true);
    for (const handle of this.#handles.values()) {
      if (handle.kind === "file") closeQuietly(handle.fd);
    }
    this.#handles.clear();
    this.#input.pause();
    // Ending our output tells the client (through sshd) that the session is over.
    this.#output.end();
    this.#resolve();
  }

  #say(line: string, always = false): void {
    if (!always && this.#logLines >= MAX_LOG_LINES) return;
    this.#logLines++;
    this.#log(this.#logLines === MAX_LOG_LINES && !always ? `${line} (further refusals are not reported)` : line);
  }

  /** Serves one packet (type byte first) and returns the reply. */
  #serve(packet: Buffer): Buffer | undefined {
    const type = packet[0];
    const reader = new PacketReader(packet.subarray(1));
    if (!this.#initialised) {
      if (type !== Packet.INIT) throw new FatalProtocolError(`the first packet has type ${type}, not INIT`);
      if (packet.length < 5) throw new FatalProtocolError("INIT carries no version");
      this.#initialised = true;
      // Whatever version the client offers, this server speaks 3 (as OpenSSH's does); a
      // client that cannot will close the channel.
      return encodeVersion(EXTENSIONS);
    }
    if (type === Packet.INIT) throw new FatalProtocolError("a second INIT arrived");
    if (packet.length < 5) throw new FatalProtocolError(`a packet of type ${type} has no request id`);
    const id = reader.u32("the request id");
    try {
      return this.#dispatch(type, id, reader);
    } catch (error) {
      if (error instanceof RequestFailure) {
        if (error.status === Status.PERMISSION_DENIED || error.status === Status.OP_UNSUPPORTED) this.#say(`refused: ${error.message}`);
        return encodeStatus(id, error.status, error.message);
      }
      if (error instanceof JailRefusal) {
        this.#say(`refused: ${error.message}`);
        return encodeStatus(id, Status.PERMISSION_DENIED, error.message);
      }
      if (error instanceof MalformedPacket) {
        this.#say(`bad request: ${error.message}`);
        return encodeStatus(id, Status.BAD_MESSAGE, `Malformed request: ${error.message}`);
      }
      throw error;
    }
  }

  #dispatch(type: number, id: number, reader: PacketReader): Buffer {
    switch (type) {
      case Packet.OPEN:
        return this.#open(id, reader);
      case Packet.CLOSE:
        return this.#close(id, reader);
      case Packet.READ:
        return this.#read(id, reader);
      case Packet.WRITE:
        return this.#write(id, reader);
      case Packet.FSTAT:
        return encodeAttrs(id, this.#fstat(reader));
      case Packet.STAT:
      case Packet.LSTAT:
        return encodeAttrs(id, this.#stat(reader));
      case Packet.SETSTAT:
      case Packet.FSETSTAT:
        return this.#setstat(id, type, reader);
      case Packet.REALPATH:
        return this.#realpath(id, reader);
      case Packet.RENAME:
        return this.#rename(id, reader, false);
      case Packet.REMOVE:
        return this.#remove(id, reader);
      case Packet.OPENDIR:
        return this.#opendir(id, reader);
      case Packet.READDIR:
        return this.#readdir(id, reader);
      case Packet.MKDIR:
      case Packet.RMDIR:
        throw denied("folders cannot be made or removed: staging holds only files");
      case Packet.SYMLINK:
      case Packet.READLINK:
        throw denied("links cannot be made or read: staging holds only regular files");
      case Packet.EXTENDED:
        return this.#extended(id, reader);
      default:
        throw new RequestFailure(Status.OP_UNSUPPORTED, `request type ${type} is not supported by this server`);
    }
  }

  #open(id: number, reader: PacketReader): Buffer {
    const target = this.#file(reader.path("the file name"));
    const pflags = reader.u32("the open flags");
    reader.attrs(); // Attributes at open are ignored: staged files are always created 0600.
    if (pflags & ~KNOWN_OPEN_FLAGS) throw new RequestFailure(Status.OP_UNSUPPORTED, `open flags 0x${pflags.toString(16)} are not supported`);
    const readable = (pflags & OpenFlag.READ) !== 0;
    const writable = (pflags & OpenFlag.WRITE) !== 0;
    if (!readable && !writable) throw new RequestFailure(Status.FAILURE, "open needs READ or WRITE");
    const changes = pflags & (OpenFlag.WRITE | OpenFlag.APPEND | OpenFlag.CREAT | OpenFlag.TRUNC | OpenFlag.EXCL);
    if (target.area === "outgoing" && changes !== 0) throw denied(`"${target.name}" is in outgoing, which is read-only`);
    if (target.area === "incoming" && !writable) throw denied(`"${target.name}" is in incoming, which is write-only`);
    if (this.#handles.size >= MAX_OPEN_HANDLES) {
      throw new RequestFailure(Status.FAILURE, `too many open handles (the limit is ${MAX_OPEN_HANDLES}): close some first`);
    }

    const c = fs.constants;
    let flags = (readable && writable ? c.O_RDWR : writable ? c.O_WRONLY : c.O_RDONLY) | c.O_NOFOLLOW | c.O_NONBLOCK;
    if (pflags & OpenFlag.CREAT) flags |= c.O_CREAT;
    if (pflags & OpenFlag.CREAT && pflags & OpenFlag.EXCL) flags |= c.O_EXCL;
    if (pflags & OpenFlag.APPEND) flags |= c.O_APPEND;
    let fd: number;
    try {
      fd = fs.openSync(target.fsPath, flags, 0o600);
    } catch (error) {
      throw fsFailure(error, target.name);
    }
    try {
      const stats = fs.fstatSync(fd);
      if (!stats.isFile()) throw denied(`"${target.name}" is not a regular file`);
      // Truncation waits until the file is known to be ours alone (a TRUNC at open would
      // have cut a hard-linked file before it could be checked).
      if (writable && stats.nlink !== 1) throw denied(`"${target.name}" has other hard links, so it is not written`);
      if (pflags & OpenFlag.TRUNC) fs.ftruncateSync(fd, 0);
    } catch (error) {
      closeQuietly(fd);
      throw error instanceof RequestFailure ? error : fsFailure(error, target.name);
    }
    return encodeHandle(id, this.#addHandle({ kind: "file", fd, area: target.area, name: target.name, readable, writable, append: (pflags & OpenFlag.APPEND) !== 0 }));
  }

  #close(id: number, reader: PacketReader): Buffer {
    const [key, handle] = this.#lookup(reader.handle());
    this.#handles.delete(key);
    if (handle.kind === "file") {
      try {
        fs.closeSync(handle.fd);
      } catch (error) {
        throw fsFailure(error, handle.name);
      }
    }
    return ok(id);
  }

  #read(id: number, reader: PacketReader): Buffer {
    const file = this.#fileHandle(reader.handle());
    const offset = reader.u64("the read offset");
    const length = Math.min(reader.u32("the read length"), MAX_READ_BYTES);
    if (file.area === "incoming" || !file.readable) throw denied(`"${file.name}" is not open for reading (incoming is write-only)`);
    const reply = allocData(length);
    let bytes: number;
    try {
      bytes = fs.readSync(file.fd, reply, DATA_HEADER_BYTES, length, offset);
    } catch (error) {
      throw fsFailure(error, file.name);
    }
    if (bytes === 0 && length > 0) return encodeStatus(id, Status.EOF, "end of file");
    return finishData(reply, id, bytes);
  }

  #write(id: number, reader: PacketReader): Buffer {
    const file = this.#fileHandle(reader.handle());
    const offset = reader.u64("the write offset");
    const data = reader.bytes("the data", MAX_PACKET_BYTES);
    if (!file.writable) throw denied(`"${file.name}" is not open for writing`);
    const end = (file.append ? fstatSize(file.fd) : offset) + data.length;
    if (end > this.#maxFileBytes) {
      throw new RequestFailure(Status.FAILURE, `a staged file may not grow past ${this.#maxFileBytes} bytes`);
    }
    try {
      let done = 0;
      while (done < data.length) done += fs.writeSync(file.fd, data, done, data.length - done, offset + done);
    } catch (error) {
      throw fsFailure(error, file.name);
    }
    return ok(id);
  }

  #fstat(reader: PacketReader): ReplyAttrs {
    const [, handle] = this.#lookup(reader.handle());
    try {
      return toAttrs(handle.kind === "file" ? fs.fstatSync(handle.fd) : fs.lstatSync(handle.fsPath));
    } catch (error) {
      throw fsFailure(error, handle.kind === "file" ? handle.name : handle.area);
    }
  }

  #stat(reader: PacketReader): ReplyAttrs {
    const target = this.#jail.resolve(reader.path("the path"));
    let stats: fs.Stats;
    try {
      stats = fs.lstatSync(target.fsPath);
    } catch (error) {
      throw fsFailure(error, target.kind === "file" ? target.name : target.area);
    }
    // Links are neither followed nor shown: they have no business in staging.
    if (target.kind === "file" && !stats.isFile()) throw denied(`"${target.name}" is not a regular file`);
    return toAttrs(stats);
  }

  #setstat(id: number, type: number, reader: PacketReader): Buffer {
    let fd: number;
    let name: string;
    let ownFd = false;
    if (type === Packet.FSETSTAT) {
      const file = this.#fileHandle(reader.handle());
      if (!file.writable) throw denied(`"${file.name}" is not open for writing, so its attributes stay as they are`);
      ({ fd, name } = file);
    } else {
      const target = this.#file(reader.path("the path"));
      name = target.name;
      if (target.area !== "incoming") throw denied(`"${name}" is in outgoing, which is read-only`);
      try {
        fd = fs.openSync(target.fsPath, fs.constants.O_WRONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
      } catch (error) {
        throw fsFailure(error, name);
      }
      ownFd = true;
    }
    try {
      const attrs = reader.attrs();
      checkSettable(attrs);
      const stats = fs.fstatSync(fd);
      if (!stats.isFile()) throw denied(`"${name}" is not a regular file`);
      if (stats.nlink !== 1) throw denied(`"${name}" has other hard links, so it is not changed`);
      if (attrs.size !== undefined) {
        if (attrs.size > this.#maxFileBytes) throw new RequestFailure(Status.FAILURE, `a staged file may not grow past ${this.#maxFileBytes} bytes`);
        fs.ftruncateSync(fd, attrs.size);
      }
      // Owner read/write always stays, and nothing becomes executable or writable by others.
      if (attrs.permissions !== undefined) fs.fchmodSync(fd, (attrs.permissions & 0o644) | 0o600);
    } catch (error) {
      throw error instanceof RequestFailure || error instanceof MalformedPacket ? error : fsFailure(error, name);
    } finally {
      if (ownFd) closeQuietly(fd);
    }
    return ok(id);
  }

  #realpath(id: number, reader: PacketReader): Buffer {
    const target = this.#jail.resolve(reader.path("the path"));
    // The answer is the path as the client should use it: the folder as the hello names it.
    const folder = target.area === "incoming" ? this.#jail.incoming : this.#jail.outgoing;
    const resolved = target.kind === "folder" ? folder : `${folder}/${target.name}`;
    return encodeName(id, [{ filename: resolved, longname: resolved }]);
  }

  #rename(id: number, reader: PacketReader, overwrite: boolean): Buffer {
    const from = this.#file(reader.path("the old path"));
    const to = this.#file(reader.path("the new path"));
    for (const target of [from, to]) {
      if (target.area !== "incoming") throw denied(`"${target.name}" is in outgoing; only files in incoming can be renamed`);
    }
    let source: fs.Stats;
    try {
      source = fs.lstatSync(from.fsPath);
    } catch (error) {
      throw fsFailure(error, from.name);
    }
    if (!source.isFile()) throw denied(`"${from.name}" is not a regular file`);
    try {
      if (overwrite) {
        const existing = lstatOrUndefined(to.fsPath);
        if (existing !== undefined && !existing.isFile()) throw denied(`"${to.name}" exists and is not a regular file`);
        fs.renameSync(from.fsPath, to.fsPath);
      } else {
        // SFTP v3 RENAME must not replace an existing file. A hard link then an unlink does
        // that atomically (as OpenSSH's sftp-server does); file systems without hard links
        // fall back to a check then a rename.
        try {
          fs.linkSync(from.fsPath, to.fsPath);
          fs.unlinkSync(from.fsPath);
        } catch (error) {
          const code = (error as NodeJS.ErrnoException).code;
          if (code !== "EPERM" && code !== "ENOTSUP" && code !== "EOPNOTSUPP" && code !== "EXDEV") throw error;
          if (lstatOrUndefined(to.fsPath) !== undefined) throw new RequestFailure(Status.FAILURE, `"${to.name}" already exists`);
          fs.renameSync(from.fsPath, to.fsPath);
        }
      }
    } catch (error) {
      if (error instanceof RequestFailure) throw error;
      if ((error as NodeJS.ErrnoException).code === "EEXIST") throw new RequestFailure(Status.FAILURE, `"${to.name}" already exists`);
      throw fsFailure(error, from.name);
    }
    return ok(id);
  }

  #remove(id: number, reader: PacketReader): Buffer {
    const target = this.#file(reader.path("the path"));
    const stats = lstatOrUndefined(target.fsPath);
    if (stats === undefined) throw new RequestFailure(Status.NO_SUCH_FILE, `"${target.name}" does not exist`);
    if (stats.isDirectory()) throw denied(`"${target.name}" is a folder; staging holds only files`);
    try {
      // unlink never follows a link: a planted symlink goes, its target stays.
      fs.unlinkSync(target.fsPath);
    } catch (error) {
      throw fsFailure(error, target.name);
    }
    return ok(id);
  }

  #opendir(id: number, reader: PacketReader): Buffer {
    const target = this.#jail.resolve(reader.path("the folder"));
    if (target.kind !== "folder") throw new RequestFailure(Status.FAILURE, `"${target.name}" is not a folder`);
    if (this.#handles.size >= MAX_OPEN_HANDLES) {
      throw new RequestFailure(Status.FAILURE, `too many open handles (the limit is ${MAX_OPEN_HANDLES}): close some first`);
    }
    return encodeHandle(id, this.#addHandle({ kind: "dir", area: target.area, fsPath: target.fsPath, listing: undefined, next: 0 }));
  }

  #readdir(id: number, reader: PacketReader): Buffer {
    const [, handle] = this.#lookup(reader.handle());
    if (handle.kind !== "dir") throw new RequestFailure(Status.FAILURE, "the handle is not a folder handle");
    if (handle.listing === undefined) {
      try {
        handle.listing = fs
          .readdirSync(handle.fsPath, { withFileTypes: true })
          .filter((entry) => entry.isFile())
          .map((entry) => entry.name)
          .slice(0, MAX_LISTED_ENTRIES);
      } catch (error) {
        throw fsFailure(error, handle.area);
      }
    }
    const entries: { filename: string; longname: string; attrs?: ReplyAttrs }[] = [];
    while (handle.next < handle.listing.length && entries.length < READDIR_BATCH) {
      const name = handle.listing[handle.next++];
      const stats = lstatOrUndefined(`${handle.fsPath}/${name}`);
      if (stats?.isFile()) entries.push({ filename: name, longname: longName(name, stats), attrs: toAttrs(stats) });
    }
    if (entries.length === 0) return encodeStatus(id, Status.EOF, "no more entries");
    return encodeName(id, entries);
  }

  #extended(id: number, reader: PacketReader): Buffer {
    const name = reader.bytes("the extension name", 256).toString("latin1");
    switch (name) {
      case "posix-rename@openssh.com":
        return this.#rename(id, reader, true);
      case "fsync@openssh.com": {
        const [, handle] = this.#lookup(reader.handle());
        if (handle.kind !== "file") throw new RequestFailure(Status.FAILURE, "fsync needs a file handle");
        try {
          fs.fsyncSync(handle.fd);
        } catch (error) {
          throw fsFailure(error, handle.name);
        }
        return ok(id);
      }
      case "limits@openssh.com":
        return encodeLimitsReply(id, { packet: MAX_PACKET_BYTES, read: MAX_READ_BYTES, write: MAX_WRITE_BYTES, handles: MAX_OPEN_HANDLES });
      default:
        throw new RequestFailure(Status.OP_UNSUPPORTED, `extension "${name.replace(/[^\x20-\x7e]/g, "?").slice(0, 64)}" is not supported by this server`);
    }
  }

  /** Resolves a path that must name a file (not one of the folders). */
  #file(clientPath: string): Extract<JailTarget, { kind: "file" }> {
    const target = this.#jail.resolve(clientPath);
    if (target.kind !== "file") throw denied(`the ${target.area} folder itself cannot be changed or opened as a file`);
    return target;
  }

  #addHandle(handle: Handle): Buffer {
    const key = this.#nextHandle;
    this.#nextHandle = (this.#nextHandle % 0xffffffff) + 1;
    this.#handles.set(key, handle);
    const bytes = Buffer.allocUnsafe(4);
    bytes.writeUInt32BE(key);
    return bytes;
  }

  #lookup(bytes: Buffer): [number, Handle] {
    const key = bytes.length === 4 ? bytes.readUInt32BE(0) : 0;
    const handle = this.#handles.get(key);
    if (handle === undefined) throw new RequestFailure(Status.FAILURE, "no such handle (it was closed or never opened)");
    return [key, handle];
  }

  #fileHandle(bytes: Buffer): OpenFile {
    const [, handle] = this.#lookup(bytes);
    if (handle.kind !== "file") throw new RequestFailure(Status.FAILURE, "the handle is a folder handle, not a file handle");
    return handle;
  }
}

function ok(id: number): Buffer {
  return encodeStatus(id, Status.OK, "ok");
}

/** SETSTAT may change size and permissions; owners and times are not the client's to set. */
function checkSettable(attrs: SftpAttrs): void {
  const unsupported = attrs.flags & ~(AttrFlag.SIZE | AttrFlag.PERMISSIONS);
  if (unsupported !== 0) {
    throw new RequestFailure(Status.OP_UNSUPPORTED, "only the size and permissions of a staged file can be set (not owner, times or extended attributes)");
  }
}

function toAttrs(stats: fs.Stats): ReplyAttrs {
  return { size: stats.size, uid: stats.uid, gid: stats.gid, mode: stats.mode, atimeMs: stats.atimeMs, mtimeMs: stats.mtimeMs };
}

/** An `ls -l`-like line, as SFTP v3 clients display it. */
function longName(name: string, stats: fs.Stats): string {
  const perms = ["r", "w", "x", "r", "w", "x", "r", "w", "x"].map((letter, i) => (stats.mode & (0o400 >> i) ? letter : "-")).join("");
  const date = new Date(stats.mtimeMs).toISOString().slice(0, 16).replace("T", " ");
  return `-${perms} 1 ${stats.uid} ${stats.gid} ${String(stats.size).padStart(10)} ${date} ${name}`;
}

function fstatSize(fd: number): number {
  try {
    return fs.fstatSync(fd).size;
  } catch (error) {
    throw fsFailure(error, "the open file");
  }
}

function lstatOrUndefined(fsPath: string): fs.Stats | undefined {
  try {
    return fs.lstatSync(fsPath);
  } catch {
    return undefined;
  }
}

function closeQuietly(fd: number): void {
  try {
    fs.closeSync(fd);
  } catch {
    // Already closed or the disk is gone; nothing more to do for a handle being dropped.
  }
}

/** Turns a file-system error into the closest SFTP status, naming the file but no server path. */
function fsFailure(error: unknown, name: string): RequestFailure {
  const code = (error as NodeJS.ErrnoException)?.code;
  switch (code) {
    case "ENOENT":
      return new RequestFailure(Status.NO_SUCH_FILE, `"${name}" does not exist`);
    case "ELOOP":
      return denied(`"${name}" is a symbolic link, and links are never followed`);
    case "EEXIST":
      return new RequestFailure(Status.FAILURE, `"${name}" already exists`);
    case "EACCES":
    case "EPERM":
      return denied(`"${name}" is not accessible to the server account`);
    case "EISDIR":
    case "ENXIO":
    case "ENOTDIR":
      return denied(`"${name}" is not a regular file`);
    case "ENOSPC":
    case "EDQUOT":
      return new RequestFailure(Status.FAILURE, `the server's disk is full while writing "${name}"`);
    default:
      return new RequestFailure(Status.FAILURE, `"${name}": ${code ?? "the server could not complete the request"}`);
  }
}
