/**
 * The lock modes against the real lab (MariaDB 10.11 primary → replica on btrfs, fauxqs): what the replica
 * must prove before a backup takes no lock, what `auto` picks and why, and — under sysbench at the lab's
 * maximum rate — that a lock-free and a commit-only backup both restore, check table by table, and recover to
 * a position between the ones the replica had just before and just after the snapshot.
 */
import { readFile, readdir } from "node:fs/promises";
import type { BackupConfig, LockMode } from "../../contracts";
import { runBackup, type BackupDeps, type BackupResult } from "../../hostscripts/backup/run";
import { PipelineError } from "../../hostscripts/common/errors";
import { EXTRAS_SCHEMA } from "../../lab/dataset";
import { rootSession } from "../../lab/mariadb";
import { sql, startLoad, stopLoad, waitForReplicaCatchUp } from "../../lab/lab";
import { withLab } from "../support/lab";
import { domainZeroSeq, labBackup, storedManifest } from "./backup-support";
import { runLabVerifier } from "./verify-support";

jest.setTimeout(300_000);

const lab = withLab();
let config: BackupConfig;
let deps: BackupDeps;

beforeAll(async () => {
  ({ config, deps } = await labBackup(lab()));
});

afterAll(() => {
  deps?.s3.destroy();
  deps?.sqs.destroy();
});

const backup = (lockMode: "auto" | LockMode) => runBackup({ ...config, lockMode }, deps);

async function refused(lockMode: LockMode): Promise<PipelineError> {
  const error = await backup(lockMode).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(PipelineError);
  expect((error as PipelineError).kind).toBe("LockModeRefused");
  return error as PipelineError;
}

const manifestOf = (result: BackupResult) => storedManifest(deps, config, result);

/** Sets a replica variable for the length of `during`, then back to what it was. */
async function withReplicaSetting<T>(name: string, value: number, during: () => Promise<T>): Promise<T> {
  const [row] = await sql(lab(), "replica", `SELECT @@GLOBAL.${name} AS v`);
  await sql(lab(), "replica", `SET GLOBAL ${name} = ${value}`);
  try {
    return await during();
  } finally {
    await sql(lab(), "replica", `SET GLOBAL ${name} = ${Number(row.v)}`);
  }
}

/** Verifies the one backup in the queue; returns the verdict the verifier wrote. */
async function verified(backupId: string) {
  const { result } = await runLabVerifier(lab(), { idleSeconds: 10 });
  expect(result.backupId).toBe(backupId);
  expect(result.checks.filter((c) => !c.passed)).toEqual([]);
  expect(result).toMatchObject({ outcome: "verified", verdict: "verified" });
  for (const table of result.tables) expect(table.check).toMatch(/^OK$|^sequence OK|support check/);
  return result;
}

describe("with the lab's MyISAM and Aria tables holding rows", () => {
  test("none is refused naming each table; nothing was locked, snapshotted or left behind", async () => {
    const error = await refused("none");
    expect(error.exitCode).toBe(14);
    expect(error.message).toContain(`${EXTRAS_SCHEMA}.legacy_myisam (MyISAM, 500 rows)`);
    expect(error.message).toContain(`${EXTRAS_SCHEMA}.audit_aria (Aria, TRANSACTIONAL=1, 500 rows)`);
    expect((await readdir(lab().snapshotDir)).filter((n) => n.startsWith("mysql-backup-"))).toEqual([]);
    const metrics = (await readFile(lab().metricsPath, "utf8"))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(metrics.at(-1)).toMatchObject({ name: "BackupFailed", dimensions: { Reason: "LockModeRefused" } });
  });

  test("auto picks BACKUP STAGE BLOCK_COMMIT, says why, and the backup verifies while MyISAM is written", async () => {
    // A writer on the MyISAM table during the backup: BLOCK_COMMIT must hold it as well as the commits.
    const writer = await rootSession(lab().primary.socket);
    let writing = true;
    const writes = (async () => {
      for (let i = 1000; writing; i++) {
        await writer.query(
          `INSERT INTO ${EXTRAS_SCHEMA}.legacy_myisam VALUES (${i}, 'written during the backup')`,
        );
      }
    })();
    let result: BackupResult;
    try {
      result = await backup("auto");
    } finally {
      writing = false;
      await writes;
      await writer.end();
    }
    expect(result).toMatchObject({ lockMode: "commit", lockChosenBy: "auto" });
    const manifest = await manifestOf(result);
    expect(manifest.lock).toMatchObject({
      method: "BACKUP STAGE BLOCK_COMMIT",
      mode: "commit",
      chosenBy: "auto",
    });
    expect(manifest.lock.reason).toContain(`${EXTRAS_SCHEMA}.legacy_myisam (MyISAM`);
    expect(manifest.positionAfter).toBeUndefined();
    const verdict = await verified(result.backupId);
    // Captured under a lock that holds commits: the restored position is exactly the captured one.
    expect(verdict.position.restored?.gtidSlavePos).toBe(manifest.position.gtidSlavePos);
    const legacy = verdict.tables.find((t) => t.table === "legacy_myisam");
    expect(legacy?.rows).toBeGreaterThan(500);
  });
});

describe("once every table that holds data is InnoDB", () => {
  beforeAll(async () => {
    for (const table of ["legacy_myisam", "audit_aria"])
      await sql(lab(), "primary", `ALTER TABLE ${EXTRAS_SCHEMA}.${table} ENGINE=InnoDB`);
    await waitForReplicaCatchUp(lab());
  });

  test("innodb_flush_log_at_trx_commit=2 on the replica: none is refused naming that setting alone", async () => {
    await withReplicaSetting("innodb_flush_log_at_trx_commit", 2, async () => {
      const error = await refused("none");
      expect(error.message).toMatch(
        /^backup \S+ of replica1: lockMode "none" is not safe on this server: innodb_flush_log_at_trx_commit=2: /,
      );
      expect(error.message).not.toContain("sync_binlog");
      expect(error.message).not.toContain(EXTRAS_SCHEMA);
    });
  });

  test("sync_binlog=0 on the replica: none is refused naming that setting alone", async () => {
    await withReplicaSetting("sync_binlog", 0, async () => {
      const error = await refused("none");
      expect(error.message).toContain('lockMode "none" is not safe on this server: sync_binlog=0: ');
      expect(error.message).not.toContain("innodb_flush_log_at_trx_commit");
    });
  });

  describe("under sysbench at the lab's maximum rate", () => {
    let appliedBefore: number;

    beforeAll(async () => {
      // --rate=0: as fast as the primary goes; the replica's single applier falls behind, as after an outage.
      await startLoad(lab(), { rate: 0, threads: 4 });
      const [row] = await sql(lab(), "replica", "SELECT @@gtid_slave_pos AS pos");
      appliedBefore = domainZeroSeq(String(row.pos));
    });

    afterAll(async () => {
      await stopLoad(lab());
    });

    test("auto takes no lock: a none backup records 0 ms of lock and verifies between its bounds", async () => {
      const result = await backup("auto");
      expect(result).toMatchObject({ lockMode: "none", lockChosenBy: "auto", lockMethod: "none", lockMs: 0 });
      const manifest = await manifestOf(result);
      expect(manifest.lock).toMatchObject({ method: "none", ms: 0, mode: "none" });
      const after = manifest.positionAfter;
      expect(after).toBeDefined();
      const verdict = await verified(result.backupId);
      const recovered = verdict.report?.position.recovered;
      expect(verdict.report?.position).toMatchObject({ lockMode: "none", bounds: expect.any(Object) });
      for (const field of ["gtidSlavePos", "gtidBinlogPos"] as const) {
        expect(domainZeroSeq(recovered?.[field])).toBeGreaterThanOrEqual(
          domainZeroSeq(manifest.position[field]),
        );
        expect(domainZeroSeq(recovered?.[field])).toBeLessThanOrEqual(domainZeroSeq(after?.[field]));
      }
      expect(recovered?.preparedXa).toEqual([]);
      console.log(
        `lock-free backup: gtid_slave_pos before ${manifest.position.gtidSlavePos}, recovered ` +
          `${recovered?.gtidSlavePos}, after ${after?.gtidSlavePos}; snapshot ${result.snapshotMs} ms`,
      );
    });

    test("a commit backup verifies with the position captured under BLOCK_COMMIT", async () => {
      const result = await backup("commit");
      expect(result).toMatchObject({ lockMode: "commit", lockChosenBy: "config" });
      expect(result.lockMs).toBeGreaterThan(0);
      // The inventory and a second flush of the volume run with only DDL held; the hold begins after them.
      const order = result.lockSteps.map((s) => s.step);
      const at = (step: string) => order.indexOf(step);
      expect(at("BACKUP STAGE BLOCK_DDL")).toBeGreaterThanOrEqual(0);
      for (const step of ["inventory", "volume flushed"]) {
        expect(at(step)).toBeGreaterThan(at("BACKUP STAGE BLOCK_DDL"));
        expect(at(step)).toBeLessThan(at("BACKUP STAGE BLOCK_COMMIT"));
      }
      const manifest = await manifestOf(result);
      const verdict = await verified(result.backupId);
      expect(verdict.report?.position.recovered?.gtidSlavePos).toBe(manifest.position.gtidSlavePos);
      expect(verdict.report?.position.bounds).toBeUndefined();
    });

    test("innodb_flush_log_at_trx_commit=0: the lock waits for InnoDB's redo log, so the backup still verifies", async () => {
      // At 0 the last second of commits sits in InnoDB's log buffer while the position read under the lock
      // counts them: without the wait the restore comes back hundreds of transactions short.
      const result = await withReplicaSetting("innodb_flush_log_at_trx_commit", 0, () => backup("commit"));
      const manifest = await manifestOf(result);
      const verdict = await verified(result.backupId);
      expect(verdict.report?.position.recovered?.gtidSlavePos).toBe(manifest.position.gtidSlavePos);
    });

    test("the load really ran: the replica applied transactions while the backups were taken", async () => {
      const [row] = await sql(lab(), "replica", "SELECT @@gtid_slave_pos AS pos");
      expect(domainZeroSeq(String(row.pos))).toBeGreaterThan(appliedBefore);
    });
  });
});
