/**
 * The restricted SFTP server without SSH: hand-built packets over a pair of streams, so every
 * refusal, cap and malformed packet can be aimed at exactly.
 */
import assert from "node:assert/strict";
import { link, lstat, mkdir, mkdtemp, readFile, readlink, rm, stat, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { PassThrough } from "node:stream";
import { afterEach, beforeEach, describe, it } from "node:test";
import { serveRestrictedSftp } from "./restricted-sftp-server.ts";
import { MAX_OPEN_HANDLES, MAX_PACKET_BYTES, MAX_READ_BYTES, OpenFlag, Packet, Status } from "./sftp-wire.ts";

const u32 = (value: number): Buffer => {
  const buffer = Buffer.alloc(4);
  buffer.writeUInt32BE(value);
  return buffer;
};
const u64 = (value: number | bigint): Buffer => {
  const buffer = Buffer.alloc(8);
  buffer.writeBigUInt64BE(BigInt(value));
  return buffer;
};
const str = (value: string | Buffer): Buffer => {
  const bytes = Buffer.from(value);
  return Buffer.concat([u32(bytes.length), bytes]);
};
const NO_ATTRS = u32(0);

interface Reply {
  type: number;
  id: number;
  status?: number;
  message?: string;
  handle?: Buffer;
  data?: Buffer;
  payload: Buffer;
}

/** A minimal SFTP client that speaks raw packets to the server under test. */
class RawClient {
  readonly toServer = new PassThrough();
  readonly fromServer = new PassThrough();
  readonly log: string[] = [];
  readonly served: Promise<void>;
  #pending = Buffer.alloc(0);
  #waiting: ((reply: Reply) => void)[] = [];
  #replies: Reply[] = [];
  #nextId = 1;
  ended = false;

  constructor(dataDir: string, maxFileBytes?: number) {
    this.served = serveRestrictedSftp({ dataDir, input: this.toServer, output: this.fromServer, log: (line) => this.log.push(line), maxFileBytes });
    this.fromServer.on("data", (chunk: Buffer) => {
      this.#pending = Buffer.concat([this.#pending, chunk]);
      while (this.#pending.length >= 4) {
        const length = this.#pending.readUInt32BE(0);
        if (this.#pending.length < 4 + length) break;
        const packet = this.#pending.subarray(4, 4 + length);
        this.#pending = this.#pending.subarray(4 + length);
        this.#deliver(parseReply(packet));
      }
    });
    this.fromServer.on("end", () => (this.ended = true));
  }

  async init(): Promise<Reply> {
    this.sendRaw(packet(Packet.INIT, u32(3)));
    return this.next();
  }

  /** Sends one request with a fresh id and waits for its reply. */
  async request(type: number, ...fields: Buffer[]): Promise<Reply> {
    const id = this.#nextId++;
    this.sendRaw(packet(type, u32(id), ...fields));
    const reply = await this.next();
    assert.equal(reply.id, id, "replies come in order");
    return reply;
  }

  sendRaw(bytes: Buffer): void {
    this.toServer.write(bytes);
  }

  next(): Promise<Reply> {
    const ready = this.#replies.shift();
    if (ready !== undefined) return Promise.resolve(ready);
    return new Promise((resolve) => this.#waiting.push(resolve));
  }

  async open(file: string, flags: number): Promise<Reply> {
    return this.request(Packet.OPEN, str(file), u32(flags), NO_ATTRS);
  }

  async openHandle(file: string, flags: number): Promise<Buffer> {
    const reply = await this.open(file, flags);
    assert.equal(reply.type, Packet.HANDLE, `open ${file}: ${reply.message}`);
    return reply.handle!;
  }

  async close(): Promise<void> {
    this.toServer.end();
    await this.served;
  }

  #deliver(reply: Reply): void {
    const waiter = this.#waiting.shift();
    if (waiter !== undefined) waiter(reply);
    else this.#replies.push(reply);
  }
}

function packet(type: number, ...fields: Buffer[]): Buffer {
  const body = Buffer.concat([Buffer.of(type), ...fields]);
  return Buffer.concat([u32(body.length), body]);
}

function parseReply(packetBytes: Buffer): Reply {
  const type = packetBytes[0];
  const payload = packetBytes.subarray(1);
  if (type === Packet.VERSION) return { type, id: -1, payload };
  const id = payload.readUInt32BE(0);
  const reply: Reply = { type, id, payload: payload.subarray(4) };
  if (type === Packet.STATUS) {
    reply.status = payload.readUInt32BE(4);
    const length = payload.readUInt32BE(8);
    reply.message = payload.subarray(12, 12 + length).toString("utf8");
  } else if (type === Packet.HANDLE || type === Packet.DATA) {
    const length = payload.readUInt32BE(4);
    const value = payload.subarray(8, 8 + length);
    if (type === Packet.HANDLE) reply.handle = value;
    else reply.data = value;
  }
  return reply;
}

function assertStatus(reply: Reply, status: number, pattern?: RegExp): void {
  assert.equal(reply.type, Packet.STATUS, `expected a STATUS, got type ${reply.type}`);
  assert.equal(reply.status, status, `expected status ${status}, got ${reply.status}: ${reply.message}`);
  if (pattern !== undefined) assert.match(reply.message ?? "", pattern);
}

let work: string;
let dataDir: string;
let incoming: string;
let outgoing: string;
let client: RawClient;

beforeEach(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), "cws-sftp-test-"));
  dataDir = path.join(work, "data");
  incoming = path.join(dataDir, "staging", "incoming");
  outgoing = path.join(dataDir, "staging", "outgoing");
  await mkdir(incoming, { recursive: true });
  await mkdir(outgoing, { recursive: true });
  await writeFile(path.join(dataDir, "hub.sqlite"), "precious");
  client = new RawClient(dataDir);
  const version = await client.init();
  assert.equal(version.type, Packet.VERSION);
});

afterEach(async () => {
  await client.close();
  await rm(work, { recursive: true, force: true });
});

describe("restricted SFTP server: what it serves", () => {
  it("answers INIT with version 3 and the extensions it implements", async () => {
    const other = new RawClient(dataDir);
    const version = await other.init();
    assert.equal(version.payload.readUInt32BE(0), 3);
    const text = version.payload.toString("latin1");
    for (const name of ["posix-rename@openssh.com", "fsync@openssh.com", "limits@openssh.com"]) assert.ok(text.includes(name), name);
    await other.close();
  });

  it("uploads into incoming as .part, renames it, and serves a bundle from outgoing", async () => {
    const data = Buffer.from("bundle bytes ".repeat(1000));
    const handle = await client.openHandle(path.join(incoming, "b1.part"), OpenFlag.WRITE | OpenFlag.CREAT | OpenFlag.TRUNC);
    assertStatus(await client.request(Packet.WRITE, str(handle), u64(0), str(data.subarray(0, 5000))), Status.OK);
    assertStatus(await client.request(Packet.WRITE, str(handle), u64(5000), str(data.subarray(5000))), Status.OK);
    assertStatus(await client.request(Packet.EXTENDED, str("fsync@openssh.com"), str(handle)), Status.OK);
    const attrs = await client.request(Packet.FSTAT, str(handle));
    assert.equal(attrs.type, Packet.ATTRS);
    assert.equal(Number(attrs.payload.readBigUInt64BE(4)), data.length);
    assertStatus(await client.request(Packet.CLOSE, str(handle)), Status.OK);
    // Relative paths are taken from incoming, the session's home.
    assertStatus(await client.request(Packet.EXTENDED, str("posix-rename@openssh.com"), str("b1.part"), str("b1")), Status.OK);
    assert.deepEqual(await readFile(path.join(incoming, "b1")), data);
    assert.equal((await stat(path.join(incoming, "b1"))).mode & 0o777, 0o600);

    await writeFile(path.join(outgoing, "o1"), data);
    const read = await client.openHandle(path.join(outgoing, "o1"), OpenFlag.READ);
    const first = await client.request(Packet.READ, str(read), u64(0), u32(4000));
    assert.deepEqual(first.data, data.subarray(0, 4000));
    const rest = await client.request(Packet.READ, str(read), u64(4000), u32(100_000));
    assert.deepEqual(rest.data, data.subarray(4000));
    assertStatus(await client.request(Packet.READ, str(read), u64(data.length), u32(10)), Status.EOF);
    assertStatus(await client.request(Packet.CLOSE, str(read)), Status.OK);
    assertStatus(await client.request(Packet.REMOVE, str(path.join(outgoing, "o1"))), Status.OK);
    await assert.rejects(stat(path.join(outgoing, "o1")), { code: "ENOENT" });
  });

  it("stats files and folders and answers realpath inside the jail", async () => {
    await writeFile(path.join(incoming, "s1"), "12345");
    const attrs = await client.request(Packet.STAT, str(path.join(incoming, "s1")));
    assert.equal(attrs.type, Packet.ATTRS);
    assert.equal(Number(attrs.payload.readBigUInt64BE(4)), 5);
    assertStatus(await client.request(Packet.LSTAT, str(path.join(incoming, "missing"))), Status.NO_SUCH_FILE);
    assert.equal((await client.request(Packet.STAT, str(outgoing))).type, Packet.ATTRS);
    const home = await client.request(Packet.REALPATH, str("."));
    assert.equal(home.type, Packet.NAME);
    assert.ok(home.payload.toString("utf8").includes(incoming));
    const sibling = await client.request(Packet.REALPATH, str("../outgoing/x"));
    assert.ok(sibling.payload.toString("utf8").includes(path.join(outgoing, "x")));
  });

  it("lists only regular files of a staging folder", async () => {
    await writeFile(path.join(outgoing, "a"), "1");
    await writeFile(path.join(outgoing, "b"), "22");
    await symlink("/etc/passwd", path.join(outgoing, "link"));
    await mkdir(path.join(outgoing, "sub"));
    const handle = (await client.request(Packet.OPENDIR, str(outgoing))).handle!;
    const names = await client.request(Packet.READDIR, str(handle));
    assert.equal(names.type, Packet.NAME);
    assert.equal(names.payload.readUInt32BE(0), 2);
    const text = names.payload.toString("latin1");
    assert.ok(text.includes("a") && text.includes("b") && !text.includes("link") && !text.includes("sub"));
    assertStatus(await client.request(Packet.READDIR, str(handle)), Status.EOF);
    assertStatus(await client.request(Packet.CLOSE, str(handle)), Status.OK);
  });

  it("renames within incoming without replacing, and posix-rename replaces", async () => {
    await writeFile(path.join(incoming, "x.part"), "new");
    await writeFile(path.join(incoming, "x"), "old");
    assertStatus(await client.request(Packet.RENAME, str("x.part"), str("x")), Status.FAILURE, /already exists/);
    assert.equal(await readFile(path.join(incoming, "x"), "utf8"), "old");
    assertStatus(await client.request(Packet.RENAME, str("x.part"), str("y")), Status.OK);
    assert.equal(await readFile(path.join(incoming, "y"), "utf8"), "new");
    assertStatus(await client.request(Packet.EXTENDED, str("posix-rename@openssh.com"), str("y"), str("x")), Status.OK);
    assert.equal(await readFile(path.join(incoming, "x"), "utf8"), "new");
  });

  it("accepts size and permissions in setstat, never execute bits, and nothing else", async () => {
    const handle = await client.openHandle("p1", OpenFlag.WRITE | OpenFlag.CREAT);
    const attrs = Buffer.concat([u32(0x1 | 0x4), u64(10), u32(0o777)]);
    assertStatus(await client.request(Packet.FSETSTAT, str(handle), attrs), Status.OK);
    const stats = await stat(path.join(incoming, "p1"));
    assert.equal(stats.size, 10);
    assert.equal(stats.mode & 0o777, 0o644);
    assertStatus(await client.request(Packet.SETSTAT, str("p1"), Buffer.concat([u32(0x8), u32(1), u32(2)])), Status.OP_UNSUPPORTED);
    assertStatus(await client.request(Packet.SETSTAT, str("p1"), Buffer.concat([u32(0x2), u32(0), u32(0)])), Status.OP_UNSUPPORTED);
    assertStatus(await client.request(Packet.SETSTAT, str("p1"), Buffer.concat([u32(0x1), u64(3)])), Status.OK);
    assert.equal((await stat(path.join(incoming, "p1"))).size, 3);
  });
});

describe("restricted SFTP server: the jail", () => {
  const outside = [
    ["an absolute path elsewhere", "/etc/passwd"],
    ["the data dir's database, relative", "../hub.sqlite"],
    ["the data dir's database, absolute", () => path.join(dataDir, "hub.sqlite")],
    ["a path climbing out", "../../x"],
    ["a climb hidden in an absolute path", () => `${incoming}/../../hub.sqlite`],
    ["a subfolder of incoming", "sub/x"],
    ["a name that is not a bundle name", "-rf"],
    ["a dot name", ".hidden"],
    ["a name with ..", "a..b"],
    ["a name with NUL", "ok\0name"],
    ["a trailing slash", "name/"],
  ] as const;
  for (const [what, target] of outside) {
    it(`refuses to open ${what}`, async () => {
      const file = typeof target === "function" ? target() : target;
      const reply = await client.open(file, OpenFlag.WRITE | OpenFlag.CREAT | OpenFlag.TRUNC);
      assertStatus(reply, Status.PERMISSION_DENIED);
      assertStatus(await client.open(file, OpenFlag.READ), Status.PERMISSION_DENIED);
      assert.equal(await readFile(path.join(dataDir, "hub.sqlite"), "utf8"), "precious");
    });
  }

  it("names the rule in its refusal and logs it", async () => {
    assertStatus(await client.open("/etc/passwd", OpenFlag.READ), Status.PERMISSION_DENIED, /outside the staging folders/);
    assert.ok(client.log.some((line) => line.includes("/etc/passwd")));
  });

  it("never follows a symlink planted in incoming or outgoing", async () => {
    const target = path.join(dataDir, "hub.sqlite");
    await symlink(target, path.join(incoming, "trap"));
    await symlink(target, path.join(outgoing, "trap"));
    await symlink(path.join(dataDir, "new-file"), path.join(incoming, "dangling"));
    assertStatus(await client.open("trap", OpenFlag.WRITE | OpenFlag.TRUNC), Status.PERMISSION_DENIED, /symbolic link/);
    assertStatus(await client.open("dangling", OpenFlag.WRITE | OpenFlag.CREAT), Status.PERMISSION_DENIED, /symbolic link/);
    assertStatus(await client.open(path.join(outgoing, "trap"), OpenFlag.READ), Status.PERMISSION_DENIED, /symbolic link/);
    assertStatus(await client.request(Packet.STAT, str("trap")), Status.PERMISSION_DENIED);
    assertStatus(await client.request(Packet.SETSTAT, str("trap"), Buffer.concat([u32(0x1), u64(0)])), Status.PERMISSION_DENIED);
    assertStatus(await client.request(Packet.RENAME, str("trap"), str("moved")), Status.PERMISSION_DENIED);
    // Removing the link removes the link, not its target.
    assertStatus(await client.request(Packet.REMOVE, str("trap")), Status.OK);
    assert.equal(await readFile(target, "utf8"), "precious");
    await assert.rejects(stat(path.join(dataDir, "new-file")), { code: "ENOENT" });
    assert.equal(await readlink(path.join(outgoing, "trap")), target);
  });

  it("refuses to write a file that has another hard link", async () => {
    await link(path.join(dataDir, "hub.sqlite"), path.join(incoming, "hard"));
    assertStatus(await client.open("hard", OpenFlag.WRITE | OpenFlag.TRUNC), Status.PERMISSION_DENIED, /hard links/);
    assert.equal(await readFile(path.join(dataDir, "hub.sqlite"), "utf8"), "precious");
  });

  it("keeps outgoing read-only and incoming write-only", async () => {
    await writeFile(path.join(outgoing, "o"), "served");
    for (const flags of [OpenFlag.WRITE, OpenFlag.READ | OpenFlag.WRITE, OpenFlag.READ | OpenFlag.CREAT, OpenFlag.READ | OpenFlag.TRUNC, OpenFlag.READ | OpenFlag.APPEND]) {
      assertStatus(await client.open(path.join(outgoing, "o"), flags), Status.PERMISSION_DENIED, /read-only/);
    }
    assertStatus(await client.open(path.join(outgoing, "new"), OpenFlag.WRITE | OpenFlag.CREAT), Status.PERMISSION_DENIED);
    assertStatus(await client.request(Packet.RENAME, str(path.join(outgoing, "o")), str("stolen")), Status.PERMISSION_DENIED);
    assertStatus(await client.request(Packet.RENAME, str("x"), str(path.join(outgoing, "o"))), Status.PERMISSION_DENIED);
    assert.equal(await readFile(path.join(outgoing, "o"), "utf8"), "served");

    await writeFile(path.join(incoming, "i"), "uploaded");
    assertStatus(await client.open("i", OpenFlag.READ), Status.PERMISSION_DENIED, /write-only/);
    // Read+write is allowed (an upload resumes that way), but reading through it is not.
    const handle = await client.openHandle("i", OpenFlag.READ | OpenFlag.WRITE);
    assertStatus(await client.request(Packet.READ, str(handle), u64(0), u32(10)), Status.PERMISSION_DENIED);
  });

  it("refuses renames out of the jail and every folder or link operation", async () => {
    await writeFile(path.join(incoming, "r"), "data");
    assertStatus(await client.request(Packet.RENAME, str("r"), str("../r")), Status.PERMISSION_DENIED);
    assertStatus(await client.request(Packet.EXTENDED, str("posix-rename@openssh.com"), str("r"), str("/tmp/r")), Status.PERMISSION_DENIED);
    assertStatus(await client.request(Packet.MKDIR, str("d"), NO_ATTRS), Status.PERMISSION_DENIED);
    assertStatus(await client.request(Packet.RMDIR, str(incoming)), Status.PERMISSION_DENIED);
    assertStatus(await client.request(Packet.SYMLINK, str("l"), str("/etc/passwd")), Status.PERMISSION_DENIED);
    assertStatus(await client.request(Packet.READLINK, str("l")), Status.PERMISSION_DENIED);
    assertStatus(await client.request(Packet.REMOVE, str(incoming)), Status.PERMISSION_DENIED);
    assertStatus(await client.request(Packet.EXTENDED, str("hardlink@openssh.com"), str("r"), str("h")), Status.OP_UNSUPPORTED);
    assertStatus(await client.request(Packet.EXTENDED, str("statvfs@openssh.com"), str("/")), Status.OP_UNSUPPORTED);
    assertStatus(await client.request(99, str("x")), Status.OP_UNSUPPORTED);
    assert.equal(await readFile(path.join(incoming, "r"), "utf8"), "data");
    assert.deepEqual((await lstat(incoming)).isDirectory(), true);
  });
});

describe("restricted SFTP server: caps and malformed packets", () => {
  it("serves at most 255 KiB per READ, however much is asked", async () => {
    await writeFile(path.join(outgoing, "big"), Buffer.alloc(MAX_READ_BYTES + 5000, 1));
    const handle = await client.openHandle(path.join(outgoing, "big"), OpenFlag.READ);
    const reply = await client.request(Packet.READ, str(handle), u64(0), u32(0xffffffff));
    assert.equal(reply.data?.length, MAX_READ_BYTES);
  });

  it("advertises its limits through limits@openssh.com", async () => {
    const reply = await client.request(Packet.EXTENDED, str("limits@openssh.com"));
    assert.equal(reply.type, Packet.EXTENDED_REPLY);
    assert.equal(Number(reply.payload.readBigUInt64BE(0)), MAX_PACKET_BYTES);
    assert.equal(Number(reply.payload.readBigUInt64BE(8)), MAX_READ_BYTES);
    assert.equal(Number(reply.payload.readBigUInt64BE(24)), MAX_OPEN_HANDLES);
  });

  it("holds at most 64 handles open", async () => {
    await writeFile(path.join(outgoing, "h"), "x");
    const handles: Buffer[] = [];
    for (let i = 0; i < MAX_OPEN_HANDLES; i++) handles.push(await client.openHandle(path.join(outgoing, "h"), OpenFlag.READ));
    assertStatus(await client.open(path.join(outgoing, "h"), OpenFlag.READ), Status.FAILURE, /too many open handles/);
    assertStatus(await client.request(Packet.CLOSE, str(handles[0])), Status.OK);
    await client.openHandle(path.join(outgoing, "h"), OpenFlag.READ);
  });

  it("refuses a write past the staged-file cap and handles it never issued", async () => {
    const small = new RawClient(dataDir, 1000);
    await small.init();
    const handle = await small.openHandle("capped", OpenFlag.WRITE | OpenFlag.CREAT);
    assertStatus(await small.request(Packet.WRITE, str(handle), u64(990), str(Buffer.alloc(20))), Status.FAILURE, /1000 bytes/);
    assertStatus(await small.request(Packet.WRITE, str(handle), u64(2n ** 60n), str("x")), Status.BAD_MESSAGE);
    // Appends land at the end whatever their offset says, so the cap counts from the end.
    const appending = await small.openHandle("appended", OpenFlag.WRITE | OpenFlag.CREAT | OpenFlag.APPEND);
    assertStatus(await small.request(Packet.WRITE, str(appending), u64(0), str(Buffer.alloc(600))), Status.OK);
    assertStatus(await small.request(Packet.WRITE, str(appending), u64(0), str(Buffer.alloc(600))), Status.FAILURE, /1000 bytes/);
    assert.equal((await stat(path.join(incoming, "appended"))).size, 600);
    assertStatus(await small.request(Packet.WRITE, str(Buffer.from("nope")), u64(0), str("x")), Status.FAILURE, /no such handle/);
    assertStatus(await small.request(Packet.CLOSE, str(Buffer.alloc(300))), Status.BAD_MESSAGE);
    assert.equal((await stat(path.join(incoming, "capped"))).size, 0);
    await small.close();
  });

  it("answers a request whose fields run past its packet with BAD_MESSAGE and goes on", async () => {
    // OPEN with a path length of 1000 in a packet that carries 3 bytes of it.
    client.sendRaw(packet(Packet.OPEN, u32(77), u32(1000), Buffer.from("abc")));
    const reply = await client.next();
    assert.equal(reply.id, 77);
    assertStatus(reply, Status.BAD_MESSAGE);
    // Invalid UTF-8 in a path is refused, not replaced.
    assertStatus(await client.request(Packet.STAT, str(Buffer.from([0xff, 0xfe]))), Status.BAD_MESSAGE, /UTF-8/);
    assert.equal((await client.request(Packet.REALPATH, str("."))).type, Packet.NAME);
  });

  it("ends the session on a packet longer than the cap, without reading it", async () => {
    client.sendRaw(Buffer.concat([u32(MAX_PACKET_BYTES + 1), Buffer.of(Packet.WRITE)]));
    await client.served;
    assert.ok(client.log.some((line) => /packet length/.test(line)));
    assert.ok(client.fromServer.readableEnded || client.ended || client.fromServer.writableEnded);
  });

  it("ends the session on a zero-length packet, a request before INIT, or a second INIT", async () => {
    client.sendRaw(u32(0));
    await client.served;
    for (const bytes of [packet(Packet.OPEN, u32(1), str("x"), u32(1), NO_ATTRS), packet(Packet.INIT, u32(3))]) {
      const fresh = new RawClient(dataDir);
      if (bytes[4] === Packet.INIT) await fresh.init();
      fresh.sendRaw(bytes);
      await fresh.served;
      assert.ok(fresh.log.some((line) => /ending the session/.test(line)), fresh.log.join("\n"));
    }
  });

  it("takes packets split at any byte and several packets in one chunk", async () => {
    await writeFile(path.join(outgoing, "s"), "split");
    const bytes = Buffer.concat([packet(Packet.STAT, u32(500), str(path.join(outgoing, "s"))), packet(Packet.STAT, u32(501), str("nothing"))]);
    for (let i = 0; i < bytes.length; i++) client.sendRaw(bytes.subarray(i, i + 1));
    const first = await client.next();
    const second = await client.next();
    assert.equal(first.id, 500);
    assert.equal(first.type, Packet.ATTRS);
    assert.equal(second.id, 501);
    assertStatus(second, Status.NO_SUCH_FILE);
  });
});
