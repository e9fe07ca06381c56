import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HubDatabase } from "./hub-db.ts";
import { isCwsError } from "../../src/errors.ts";

/** A hub database on a fake clock that tests move by hand. */
function fixture() {
  const dir = mkdtempSync(join(tmpdir(), "cws-hubdb-"));
  let now = 1_800_000_000_000;
  const db = new HubDatabase(join(dir, "hub.sqlite"), { clock: () => now, leaseTtlMs: 120_000 });
  const a = db.registerDevice("A", undefined);
  const b = db.registerDevice("B", undefined);
  db.createSuperproject("proj");
  return {
    db, a, b,
    advance(ms: number) { now += ms; },
    commit(deviceId: string, base: number | null, token?: number) {
      return db.commit({ slug: "proj", base, deviceId, kind: "push", manifestHash: "0123456789abcdef", files: 0, bytes: 0, fencingToken: token });
    },
    close() { db.close(); rmSync(dir, { recursive: true, force: true }); },
  };
}

test("a lease expires 120 s after the last heartbeat and not a millisecond before", () => {
  const f = fixture();
  try {
    const lease = f.db.acquireLease(f.a, "proj");
    f.advance(60_000);
    f.db.heartbeat(f.a, lease.token);
    f.advance(119_999);
    assert.equal(f.db.lease().active, true);
    assert.throws(() => f.db.acquireLease(f.b, "proj"), (e: unknown) => isCwsError(e, "LEASE_HELD"));
    f.advance(1);
    assert.equal(f.db.lease().active, false);
    const taken = f.db.acquireLease(f.b, "proj");
    assert.equal(taken.deviceId, f.b);
    assert.equal(taken.token, lease.token + 1);
  } finally {
    f.close();
  }
});

test("a stale fencing token is refused even after its holder wakes up", () => {
  const f = fixture();
  try {
    const old = f.db.acquireLease(f.a, "proj");
    const first = f.commit(f.a, null, old.token);
    f.advance(121_000);
    const fresh = f.db.acquireLease(f.b, "proj");
    assert.throws(() => f.commit(f.a, first.id, old.token), (e: unknown) => isCwsError(e, "LEASE_LOST"));
    assert.throws(() => f.db.heartbeat(f.a, old.token), (e: unknown) => isCwsError(e, "LEASE_LOST"));
    // Without a token, a device that does not hold the active lease may not push either.
    assert.throws(() => f.commit(f.a, first.id), (e: unknown) => isCwsError(e, "LEASE_HELD"));
    assert.equal(f.commit(f.b, first.id, fresh.token).parent, first.id);
    assert.equal(f.db.head("proj")?.deviceId, f.b);
  } finally {
    f.close();
  }
});

test("the head moves only from the base the pusher saw", () => {
  const f = fixture();
  try {
    const one = f.commit(f.a, null);
    assert.throws(() => f.commit(f.b, null), (e: unknown) => isCwsError(e, "HEAD_MOVED"));
    const two = f.commit(f.b, one.id);
    assert.equal(two.parent, one.id);
    assert.equal(f.db.head("proj")?.id, two.id);
  } finally {
    f.close();
  }
});

test("acquire succeeds when free, expired or already ours, and every grant raises the token", () => {
  const f = fixture();
  try {
    const first = f.db.acquireLease(f.a, "proj");
    const again = f.db.acquireLease(f.a, "proj");
    assert.equal(again.token, first.token + 1);
    f.db.releaseLease(f.a, again.token);
    assert.equal(f.db.lease().active, false);
    const b = f.db.acquireLease(f.b, "proj");
    assert.equal(b.token, again.token + 1);
    // Releasing with an old token does nothing.
    f.db.releaseLease(f.a, first.token);
    assert.equal(f.db.lease().deviceId, f.b);
  } finally {
    f.close();
  }
});

test("the schema version is recorded and a database from a newer cws is refused", () => {
  const f = fixture();
  try {
    const { user_version } = f.db.db.prepare("PRAGMA user_version").get() as { user_version: number };
    assert.ok(user_version >= 2);
    f.db.db.exec(`PRAGMA user_version = ${user_version + 5}`);
    const path = f.db.db.location()!;
    assert.throws(() => new HubDatabase(path), (e: unknown) => isCwsError(e, "PROTOCOL_MISMATCH"));
  } finally {
    f.close();
  }
});

test("a take-over grants a held lease with a new token, and the old holder's next push and heartbeat are refused", () => {
  const f = fixture();
  try {
    const old = f.db.acquireLease(f.a, "proj");
    assert.throws(() => f.db.acquireLease(f.b, "proj"), (e: unknown) => isCwsError(e, "LEASE_HELD") && /--take-over/.test(e.message));
    const taken = f.db.acquireLease(f.b, "proj", true);
    assert.equal(taken.deviceId, f.b);
    assert.equal(taken.token, old.token + 1);
    assert.throws(() => f.commit(f.a, null, old.token), (e: unknown) => isCwsError(e, "LEASE_LOST"));
    assert.throws(() => f.db.heartbeat(f.a, old.token), (e: unknown) => isCwsError(e, "LEASE_LOST"));
    assert.equal(f.db.head("proj"), null, "the refused push moved nothing");
    assert.equal(f.commit(f.b, null, taken.token).deviceId, f.b);
  } finally {
    f.close();
  }
});

test("re-enrolling a device keeps its id and leaves no second record", () => {
  const f = fixture();
  try {
    const again = f.db.registerDevice("A (new laptop)", "SHA256:new", f.a);
    assert.equal(again, f.a);
    const devices = f.db.listDevices();
    assert.equal(devices.length, 2);
    assert.deepEqual(devices.find((d) => d.id === f.a)?.name, "A (new laptop)");
    assert.equal(devices.find((d) => d.id === f.a)?.keyFingerprint, "SHA256:new");
  } finally {
    f.close();
  }
});

test("a revoked device cannot open a session, its lease is released, and its old token cannot push", () => {
  const f = fixture();
  try {
    const lease = f.db.acquireLease(f.a, "proj");
    const revoked = f.db.revokeDevice("A");
    assert.equal(revoked.id, f.a);
    assert.notEqual(revoked.revokedAt, null);
    assert.equal(f.db.lease().active, false);
    assert.throws(() => f.db.device(f.a), (e: unknown) => isCwsError(e, "NOT_ENROLLED") && /revoked/.test(e.message));
    assert.throws(() => f.commit(f.a, null, lease.token), (e: unknown) => isCwsError(e));
    // Re-enrolling under a revoked id makes a new device instead of reviving it.
    assert.notEqual(f.db.registerDevice("A", undefined, f.a), f.a);
    assert.throws(() => f.db.revokeDevice("nobody"), (e: unknown) => isCwsError(e, "NOT_FOUND"));
  } finally {
    f.close();
  }
});

test("each superproject numbers its own snapshots from 1", () => {
  const f = fixture();
  try {
    f.db.createSuperproject("other");
    const first = f.commit(f.a, null);
    const other = f.db.commit({ slug: "other", base: null, deviceId: f.a, kind: "push", manifestHash: "0123456789abcdef", files: 0, bytes: 0 });
    const second = f.commit(f.a, first.id);
    assert.deepEqual([first.number, second.number], [1, 2]);
    assert.equal(other.number, 1);
    assert.notEqual(other.id, first.id, "the global ids stay distinct");
  } finally {
    f.close();
  }
});
