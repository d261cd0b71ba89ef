/**
 * Point-in-time recovery from a lock-free (`none`) snapshot on the lab, under sysbench load with the binlog
 * archiver running: such a snapshot's start is not a position captured under a lock but the one the restored
 * server recovers to — the verdict's, or with no verdict the one a first start of the restored server reads
 * (restore/point.ts, pitr.ts). From a verified `none` snapshot A, `restore --until-gtid G` (G read on the
 * primary under FTWRL, with every table's checksum) reaches exactly G with the primary's data at G, and
 * `--until T` reaches the last GTID committed at or before T per `mariadb-binlog`; from an unverified `none`
 * snapshot C named with `--backup`, the same G is reached with the same data.
 */
import { rm } from "node:fs/promises";
import { join } from "node:path";
import type { BackupManifest, VerificationReport } from "../../contracts";
import { runBackup, type BackupResult } from "../../hostscripts/backup/run";
import type { PitrResult } from "../../hostscripts/restore/pitr";
import { EXTRAS_SCHEMA } from "../../lab/dataset";
import { sql, type Lab } from "../../lab/lab";
import { rootSession } from "../../lab/mariadb";
import { markerRows } from "../../lab/pitr";
import { waitUntil } from "../../lab/processes";
import { withLab } from "../support/lab";
import { domainZeroSeq, labBackup, storedManifest } from "./backup-support";
import {
  binlogOracle,
  cli,
  failingTables,
  lastCommittedAtOrBefore,
  startRestored,
  type RestoredServer,
  waitForArchive,
  waitForSegment,
} from "../support/pitr";
import { runLabVerifier } from "./verify-support";

jest.setTimeout(300_000);

const lab = withLab({ load: true, pitr: true });

/** A lock-free backup of the lab replica, with its manifest. */
async function lockFreeBackup(l: Lab): Promise<{ result: BackupResult; manifest: BackupManifest }> {
  const { config, deps } = await labBackup(l);
  try {
    const result = await runBackup({ ...config, lockMode: "none" }, deps);
    expect(result).toMatchObject({ lockMode: "none", lockMs: 0 });
    return { result, manifest: await storedManifest(deps, config, result) };
  } finally {
    deps.s3.destroy();
    deps.sqs.destroy();
  }
}

/** Content checksum of every table outside the system schemas, by name. */
async function checksums(query: (sql: string) => Promise<Record<string, unknown>[]>) {
  const tables = await query(
    `SELECT CONCAT('\`', TABLE_SCHEMA, '\`.\`', TABLE_NAME, '\`') AS t FROM information_schema.TABLES
     WHERE TABLE_TYPE <> 'VIEW' AND TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys')
     ORDER BY t`,
  );
  const rows = await query(`CHECKSUM TABLE ${tables.map((r) => String(r.t)).join(", ")} EXTENDED`);
  return Object.fromEntries(
    rows.map((r) => [String(r.Table), r.Checksum === null ? null : String(r.Checksum)]),
  );
}

/** The primary's GTID position and every table's checksum at one point (writes held by FTWRL meanwhile). */
async function primaryAtOnePoint(l: Lab): Promise<{ gtid: string; sums: Record<string, string | null> }> {
  const session = await rootSession(l.primary.socket);
  const query = async (text: string) => (await session.query(text))[0] as Record<string, unknown>[];
  try {
    await query("FLUSH TABLES WITH READ LOCK");
    const [row] = await query("SELECT @@gtid_binlog_pos AS pos");
    return { gtid: String(row.pos), sums: await checksums(query) };
  } finally {
    await query("UNLOCK TABLES").catch(() => undefined);
    await session.end();
  }
}

/** A none backup, its verdict's report, and when it was complete. */
let a: { backupId: string; manifest: BackupManifest; report: VerificationReport; doneMs: number };
/** A none backup taken after A and never verified. */
let c: { backupId: string; manifest: BackupManifest };
/** The point: G on the primary, with its tables' checksums there. */
let point: { gtid: string; sums: Record<string, string | null> };
/** A time between A and the point, half a second after a marker row's commit. */
let t: { atMs: number; markerId: number };

beforeAll(async () => {
  // A lock-free backup needs every table that holds data crash-safe; under the load, wait for the replica
  // to apply the ALTERs themselves rather than to catch up.
  for (const table of ["legacy_myisam", "audit_aria"])
    await sql(lab(), "primary", `ALTER TABLE ${EXTRAS_SCHEMA}.${table} ENGINE=InnoDB`);
  const [altered] = await sql(lab(), "primary", "SELECT @@gtid_binlog_pos AS pos");
  const applied = await waitUntil(
    async () => {
      const [row] = await sql(lab(), "replica", "SELECT @@gtid_slave_pos AS pos");
      return domainZeroSeq(String(row.pos)) >= domainZeroSeq(String(altered.pos));
    },
    120_000,
    250,
  );
  if (!applied) throw new Error(`the replica did not apply ${String(altered.pos)} within 120 s`);

  const backupA = await lockFreeBackup(lab());
  const doneMs = Date.now();
  const { result } = await runLabVerifier(lab());
  expect(result).toMatchObject({ backupId: backupA.result.backupId, outcome: "verified" });
  a = { backupId: backupA.result.backupId, manifest: backupA.manifest, report: result.report!, doneMs };
  await new Promise((r) => setTimeout(r, 8000));
  const backupC = await lockFreeBackup(lab());
  c = { backupId: backupC.result.backupId, manifest: backupC.manifest };
  await new Promise((r) => setTimeout(r, 5000));
  point = await primaryAtOnePoint(lab());
  await waitForSegment(
    lab(),
    (e) => domainZeroSeq(e.gtid.after) >= domainZeroSeq(point.gtid),
    `GTID ${point.gtid}`,
  );

  const markers = (await markerRows(lab().primary.socket)).filter(
    (m) => m.at > a.doneMs + 2000 && m.at < a.doneMs + 7000,
  );
  expect(markers.length).toBeGreaterThan(2);
  const marker = markers[Math.floor(markers.length / 2)];
  t = { atMs: marker.at + 500, markerId: marker.id };
  await waitForArchive(lab(), t.atMs + 2000);
}, 300_000);

/** Runs `restore` into a fresh target, starts the restored server and hands both to `check`; cleans up. */
async function restored(
  name: string,
  args: string[],
  check: (result: PitrResult, server: RestoredServer) => Promise<void>,
): Promise<void> {
  const target = join(lab().dir, name);
  try {
    const run = await cli(["restore", "--config", lab().restoreConfigPath, "--target", target, ...args]);
    expect([run.code, run.json.message ?? null]).toEqual([0, null]);
    const result = run.json as unknown as PitrResult;
    const server = await startRestored(lab(), result.datadir, name);
    try {
      await check(result, server);
      expect(await failingTables(server)).toEqual([]);
    } finally {
      await server.stop();
    }
  } finally {
    await rm(target, { recursive: true, force: true });
  }
}

test("the verified lock-free snapshot recovered to a position between its bounds", () => {
  const recovered = a.report.position.recovered;
  expect(a.report.position).toMatchObject({ lockMode: "none", bounds: expect.any(Object) });
  expect(domainZeroSeq(recovered?.gtidBinlogPos)).toBeGreaterThanOrEqual(
    domainZeroSeq(a.manifest.position.gtidBinlogPos),
  );
  expect(domainZeroSeq(recovered?.gtidBinlogPos)).toBeLessThanOrEqual(
    domainZeroSeq(a.manifest.positionAfter?.gtidBinlogPos),
  );
  console.log(
    `snapshot A ${a.backupId}: before ${a.manifest.position.gtidBinlogPos}, recovered ${recovered?.gtidBinlogPos}, ` +
      `after ${a.manifest.positionAfter?.gtidBinlogPos}; the point G ${point.gtid}`,
  );
});

test("--until-gtid G from the verified none snapshot: starts at its recovered position, reaches G with the primary's data", async () => {
  await restored("pitr-none-gtid", ["--until-gtid", point.gtid], async (result, server) => {
    expect(result.backupId).toBe(a.backupId);
    expect(result.pitr.startGtid).toBe(a.report.position.recovered?.gtidBinlogPos);
    expect(result.pitr).toMatchObject({ reachedGtid: point.gtid, lastGtid: point.gtid, lost: null });
    expect(result.pitr.transactions).toBe(domainZeroSeq(point.gtid) - domainZeroSeq(result.pitr.startGtid));
    console.log(
      `PITR from ${result.pitr.startGtid} to ${point.gtid}: ${result.pitr.transactions} transactions replayed in ${result.pitr.replaySeconds}s`,
    );
    const [position] = await server.query("SELECT @@gtid_binlog_pos AS pos, @@gtid_slave_pos AS slave");
    expect(position).toEqual({ pos: point.gtid, slave: point.gtid });
    expect(await checksums(server.query)).toEqual(point.sums);
  });
});

test("--until T from the verified none snapshot: the last GTID committed at or before T, its newest marker", async () => {
  const until = new Date(t.atMs).toISOString();
  await restored("pitr-none-time", ["--until", until], async (result, server) => {
    expect(result.backupId).toBe(a.backupId);
    expect(result.pitr.startGtid).toBe(a.report.position.recovered?.gtidBinlogPos);
    const expected = lastCommittedAtOrBefore(await binlogOracle(lab().primary.datadir), t.atMs);
    expect(result.pitr).toMatchObject({ reachedGtid: expected, lastGtid: expected });
    const [newest] = await markerRows(server.socket, true);
    expect(newest.id).toBe(t.markerId);
  });
});

test("--backup C --until-gtid G from an unverified none snapshot: the start is read from the restored server", async () => {
  await restored(
    "pitr-none-unverified",
    ["--backup", c.backupId, "--until-gtid", point.gtid],
    async (result, server) => {
      expect(result.backupId).toBe(c.backupId);
      expect(result.verdict).toBeNull();
      const start = domainZeroSeq(result.pitr.startGtid);
      expect(start).toBeGreaterThanOrEqual(domainZeroSeq(c.manifest.position.gtidBinlogPos));
      expect(start).toBeLessThanOrEqual(domainZeroSeq(c.manifest.positionAfter?.gtidBinlogPos));
      expect(result.pitr).toMatchObject({ reachedGtid: point.gtid, lastGtid: point.gtid });
      const [position] = await server.query("SELECT @@gtid_binlog_pos AS pos");
      expect(position.pos).toBe(point.gtid);
      expect(await checksums(server.query)).toEqual(point.sums);
    },
  );
});
