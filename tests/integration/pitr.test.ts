/**
 * Point-in-time recovery on the lab, as the acceptance reads: under sysbench load, with the binlog
 * archiver running beside the replica and a marker row committed on the primary every second, snapshot A,
 * load, snapshot B; `restore --until T` for a T between them gives a server whose newest marker is within a
 * second of T, whose GTID is exactly the last one committed at or before T (per `mariadb-binlog` on the
 * primary's own binlogs), and whose tables all pass CHECK TABLE. A segment flipped by one byte is refused
 * before anything is restored or replayed. `restore list` shows the window. Then the primary (and the
 * archiver with it) is destroyed, and a restore to the newest archived point loses at most the RPO, measured.
 */
import { readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { GetObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { ExitCode } from "../../hostscripts/common/errors";
import type { PitrResult } from "../../hostscripts/restore/pitr";
import type { PitrSummary } from "../../hostscripts/restore/window";
import { LAB_RPO_SECONDS } from "../../lab/configs";
import { labAwsClients, replicaStatus, type Lab } from "../../lab/lab";
import { archiverPid, markerRows } from "../../lab/pitr";
import { processesUsing } from "../../lab/processes";
import { withLab } from "../support/lab";
import {
  binlogOracle,
  cli,
  failingTables,
  lastCommittedAtOrBefore,
  ledger,
  startRestored,
  waitForArchive,
} from "../support/pitr";
import { runLabVerifier, takeBackup } from "./verify-support";

jest.setTimeout(600_000);

const lab = withLab({ load: true, pitr: true });

/** A backup of the lab replica, verified, and when it was complete. */
async function verifiedBackup(l: Lab): Promise<{ backupId: string; doneMs: number }> {
  const backup = await takeBackup(l);
  const doneMs = Date.now();
  expect((await runLabVerifier(l)).result).toMatchObject({ outcome: "verified" });
  return { backupId: backup.backupId, doneMs };
}

let a: { backupId: string; doneMs: number };
let b: { backupId: string; doneMs: number };
/** The point between A and B: half a second after a marker row's commit. */
let t: { atMs: number; markerId: number };

beforeAll(async () => {
  a = await verifiedBackup(lab());
  await new Promise((r) => setTimeout(r, 15_000));
  b = await verifiedBackup(lab());
  const markers = (await markerRows(lab().primary.socket)).filter(
    (m) => m.at > a.doneMs + 3000 && m.at < b.doneMs - 8000,
  );
  expect(markers.length).toBeGreaterThan(3);
  const marker = markers[Math.floor(markers.length / 2)];
  t = { atMs: marker.at + 500, markerId: marker.id };
  await waitForArchive(lab(), t.atMs + 2000);
});

const restoreArgs = (target: string, ...more: string[]) => [
  "restore",
  "--config",
  lab().restoreConfigPath,
  "--target",
  target,
  ...more,
];

test("restore --until T between two snapshots: newest marker within 1 s of T, the exact GTID, every table checks", async () => {
  const target = join(lab().dir, "pitr-time");
  const until = new Date(t.atMs).toISOString();
  const restored = await cli(restoreArgs(target, "--until", until));
  expect(restored.code).toBe(0);
  const result = restored.json as unknown as PitrResult;
  expect(result.backupId).toBe(a.backupId);
  const expected = lastCommittedAtOrBefore(await binlogOracle(lab().primary.datadir), t.atMs);
  console.log(
    `PITR to ${until}: ${result.pitr.transactions} transactions from ${result.pitr.segments} segments replayed in ` +
      `${result.pitr.replaySeconds}s (${result.pitr.replayRate} tx/s); expected GTID ${expected}, reached ${result.pitr.reachedGtid}`,
  );
  expect(result.pitr).toMatchObject({ reachedGtid: expected, lastGtid: expected, lost: null });
  expect(result.pitr.transactions).toBeGreaterThan(100);
  const server = await startRestored(lab(), result.datadir, "pitr-time");
  try {
    const [position] = await server.query("SELECT @@gtid_binlog_pos AS pos, @@gtid_slave_pos AS slave");
    expect(position).toEqual({ pos: expected, slave: expected });
    const [newest] = await markerRows(server.socket, true);
    expect(newest.id).toBe(t.markerId);
    expect(Math.abs(newest.at - t.atMs)).toBeLessThanOrEqual(1000);
    expect(await failingTables(server)).toEqual([]);
    expect(await server.query("SHOW SLAVE STATUS")).toEqual([]);
  } finally {
    await server.stop();
    await rm(target, { recursive: true, force: true });
  }
});

test("a segment flipped by one byte in S3 is refused before anything is restored or replayed", async () => {
  const entry = (await ledger(lab())).find(
    (e) =>
      Date.parse(e.transactions.firstCommitAt ?? "") <= t.atMs &&
      Date.parse(e.transactions.lastCommitAt ?? "") >= t.atMs - 1000,
  )!;
  expect(entry).toBeDefined();
  const { s3 } = labAwsClients(lab());
  const original = Buffer.from(
    await (
      await s3.send(new GetObjectCommand({ Bucket: lab().s3.bucket, Key: entry.segmentKey }))
    ).Body!.transformToByteArray(),
  );
  const flipped = Buffer.from(original);
  flipped[Math.floor(flipped.length / 2)] ^= 0x01;
  await s3.send(new PutObjectCommand({ Bucket: lab().s3.bucket, Key: entry.segmentKey, Body: flipped }));
  const target = join(lab().dir, "pitr-flipped");
  try {
    const refused = await cli(restoreArgs(target, "--until", new Date(t.atMs).toISOString()));
    expect(refused.code).toBe(ExitCode.PitrRefused);
    expect(refused.json.message).toEqual(expect.stringContaining(entry.segmentKey));
    expect(refused.json.message).toMatch(
      /does not match its ledger entry: .* sha256 [0-9a-f]{64}, the ledger says .*; nothing was replayed/,
    );
    // Nothing was restored: the target is empty and no server ever ran on it.
    expect(await readdir(target).catch(() => [])).toEqual([]);
    expect((await processesUsing(target)).length).toBe(0);
  } finally {
    await s3.send(new PutObjectCommand({ Bucket: lab().s3.bucket, Key: entry.segmentKey, Body: original }));
    s3.destroy();
    await rm(target, { recursive: true, force: true });
  }
});

test("restore list shows the window the archive and the verified snapshots cover", async () => {
  const listed = await cli(["restore", "--config", lab().restoreConfigPath, "list"]);
  expect(listed.code).toBe(0);
  const pitr = listed.json.pitr as PitrSummary;
  const window = pitr.windows.find((w) => w.snapshots.includes(a.backupId))!;
  expect(window).toBeDefined();
  expect(Date.parse(window.from)).toBeLessThanOrEqual(a.doneMs);
  expect(Date.parse(window.to)).toBeGreaterThan(t.atMs);
  expect(window.snapshots).toEqual(expect.arrayContaining([a.backupId, b.backupId]));
  expect(pitr.chains).toEqual([
    expect.objectContaining({ host: "replica1", reason: "first-run", missing: null, incomplete: 0 }),
  ]);
});

test("the primary destroyed: a restore to the newest archived point loses at most the RPO", async () => {
  const behind = (await replicaStatus(lab())).secondsBehind ?? 0;
  const archiver = await archiverPid(lab().dir);
  expect(archiver).toBeDefined();
  // The worst case: the primary and the archiving host's uploads end at the same instant.
  const destroyedAt = Date.now();
  process.kill(lab().primary.pid, "SIGKILL");
  process.kill(archiver!, "SIGKILL");
  const target = join(lab().dir, "pitr-latest");
  const restored = await cli(restoreArgs(target, "--until", "latest"));
  expect(restored.code).toBe(0);
  const result = restored.json as unknown as PitrResult;
  expect(result.backupId).toBe(b.backupId);
  const newestArchived = (await ledger(lab()))
    .map((e) => e.gtid.after)
    .sort((x, y) => Number(x.split("-")[2]) - Number(y.split("-")[2]))
    .at(-1);
  expect(result.pitr.reachedGtid).toBe(newestArchived);
  const server = await startRestored(lab(), result.datadir, "pitr-latest");
  try {
    const [newest] = await markerRows(server.socket, true);
    const lostSeconds = (destroyedAt - newest.at) / 1000;
    console.log(
      `primary destroyed at ${new Date(destroyedAt).toISOString()}: the newest restored marker is ${lostSeconds.toFixed(1)} s older ` +
        `(RPO ${LAB_RPO_SECONDS} s; the replica was ${behind} s behind its primary when it happened)`,
    );
    // The archiver's share of the loss is bounded by the RPO; replication delay comes on top of it.
    expect(lostSeconds).toBeLessThanOrEqual(LAB_RPO_SECONDS + behind + 1);
    expect(await failingTables(server)).toEqual([]);
  } finally {
    await server.stop();
    await rm(target, { recursive: true, force: true });
  }
});
