/**
 * What a lock-free (`none`) backup does when the server changes under it, against the real lab (MariaDB 10.11
 * primary → replica on btrfs, fauxqs). The race is made deterministic through the backup's injected snapshot
 * driver: the real btrfs driver, whose `create` first waits for a statement run on the primary to be applied
 * by the replica (or runs it alongside the snapshot command and waits for both). So the change lands exactly
 * where a real one would race: after the crash-safety proof, the inventory and the position read before the
 * snapshot, and before the re-check and the position read after it.
 *
 * - A non-crash-safe table that held no rows (so it did not count against `none`) gains rows while the
 *   snapshot is taken, or one is created with rows just before it: the re-check discards the snapshot and
 *   refuses naming the table; the next `auto` backup locks (BLOCK_COMMIT) and verifies. So it does when a
 *   crash-safety setting is turned off during the snapshot.
 * - DDL between the inventory and the snapshot: the verifier fails the "tables" check naming the created and
 *   the dropped table as inventory differences, while every table the manifest lists and the restore holds
 *   passes CHECK TABLE and the recovered position lies between its bounds.
 */
import { readdir } from "node:fs/promises";
import type { BackupConfig, LockMode } from "../../contracts";
import { runBackup, type BackupDeps, type BackupResult } from "../../hostscripts/backup/run";
import { PipelineError } from "../../hostscripts/common/errors";
import type { SnapshotDriver } from "../../hostscripts/common/snapshot/driver";
import { EXTRAS_SCHEMA } from "../../lab/dataset";
import { sql, waitForReplicaCatchUp } from "../../lab/lab";
import { withLab } from "../support/lab";
import { domainZeroSeq, labBackup, storedManifest } from "./backup-support";
import { queueDepth, readMetrics, runLabVerifier, withClients } from "./verify-support";

jest.setTimeout(240_000);

const lab = withLab();
let config: BackupConfig;
let deps: BackupDeps;

beforeAll(async () => {
  ({ config, deps } = await labBackup(lab()));
  // Every table that holds data crash-safe, so `auto` takes no lock; the empty MyISAM table does not count.
  for (const table of ["legacy_myisam", "audit_aria"])
    await sql(lab(), "primary", `ALTER TABLE ${EXTRAS_SCHEMA}.${table} ENGINE=InnoDB`);
  await sql(lab(), "primary", `CREATE TABLE ${EXTRAS_SCHEMA}.late_myisam (id INT PRIMARY KEY) ENGINE=MyISAM`);
  await sql(
    lab(),
    "primary",
    `CREATE TABLE ${EXTRAS_SCHEMA}.doomed (id INT PRIMARY KEY) ENGINE=InnoDB AS SELECT seq AS id FROM ${EXTRAS_SCHEMA}.seq_1_to_20`,
  );
  await waitForReplicaCatchUp(lab());
});

afterAll(() => {
  deps?.s3.destroy();
  deps?.sqs.destroy();
});

/** Runs `statements` on the primary and waits until the replica applied them. */
async function onReplicaViaPrimary(statements: string[]): Promise<void> {
  for (const statement of statements) await sql(lab(), "primary", statement);
  await waitForReplicaCatchUp(lab(), 4000);
}

/**
 * The backup's own snapshot driver, with `change` applied on the replica just before its snapshot command
 * (`before`: the change is in the snapshot), or alongside it (`during`); the snapshot is returned once both
 * are done, so the change always lands before what the backup does after the snapshot.
 */
function racing(
  driver: SnapshotDriver,
  when: "before" | "during",
  change: () => Promise<void>,
): SnapshotDriver {
  const create: SnapshotDriver["create"] = async (backupId, signal) => {
    if (when === "before") await change();
    const [changed, taken] = await Promise.allSettled([
      when === "during" ? change() : undefined,
      driver.create(backupId, signal),
    ]);
    if (changed.status === "rejected") throw changed.reason;
    if (taken.status === "rejected") throw taken.reason;
    return taken.value;
  };
  return Object.assign(Object.create(driver) as SnapshotDriver, { create });
}

function backup(lockMode: "auto" | LockMode, driver = deps.driver): Promise<BackupResult> {
  return runBackup({ ...config, lockMode }, { ...deps, driver });
}

const manifestOf = (result: BackupResult) => storedManifest(deps, config, result);

/**
 * A backup the re-check refused: LockModeRefused naming `subject`, and nothing of it left — no snapshot, no
 * local directory, no message, the failure metric emitted.
 */
async function refusedByRecheck(driver: SnapshotDriver, subject: string): Promise<void> {
  const error = await backup("auto", driver).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(PipelineError);
  const refused = error as PipelineError;
  expect(refused.kind).toBe("LockModeRefused");
  expect(refused.message).toMatch(
    /^backup \S+ of replica1: lock mode "none" no longer held when the snapshot was taken, so the snapshot was discarded: /,
  );
  expect(refused.message).toContain(subject);
  const backupId = /^backup (\S+) of/.exec(refused.message)![1];
  expect((await readdir(lab().snapshotDir)).filter((n) => n.startsWith("mysql-backup-"))).toEqual([]);
  expect(await readdir(config.localDir)).not.toContain(backupId);
  expect(await withClients(lab(), ({ sqs }) => queueDepth(sqs, config.sqs.queueUrl))).toBe(0);
  expect((await readMetrics(lab())).at(-1)).toMatchObject({
    name: "BackupFailed",
    dimensions: { Reason: "LockModeRefused" },
  });
}

describe("the re-check after a lock-free snapshot", () => {
  test("an empty MyISAM table written while the snapshot is taken: discarded and refused; auto then locks and verifies", async () => {
    const written = racing(deps.driver, "during", () =>
      onReplicaViaPrimary([`INSERT INTO ${EXTRAS_SCHEMA}.late_myisam VALUES (1), (2), (3)`]),
    );
    await refusedByRecheck(written, `${EXTRAS_SCHEMA}.late_myisam (MyISAM, 3 rows)`);

    const next = await backup("auto");
    expect(next).toMatchObject({ lockMode: "commit", lockChosenBy: "auto" });
    expect((await manifestOf(next)).lock.reason).toContain(`${EXTRAS_SCHEMA}.late_myisam (MyISAM, 3 rows)`);
    const { result } = await runLabVerifier(lab(), { idleSeconds: 10 });
    expect(result).toMatchObject({ backupId: next.backupId, outcome: "verified", verdict: "verified" });
    expect(result.tables.find((t) => t.table === "late_myisam")).toMatchObject({ rows: 3, check: "OK" });
  });

  test("an Aria table created with rows just before the snapshot (after the inventory): discarded and refused", async () => {
    await onReplicaViaPrimary([`TRUNCATE TABLE ${EXTRAS_SCHEMA}.late_myisam`]);
    const created = racing(deps.driver, "before", () =>
      onReplicaViaPrimary([
        `CREATE TABLE ${EXTRAS_SCHEMA}.late_aria (id INT PRIMARY KEY) ENGINE=Aria TRANSACTIONAL=1`,
        `INSERT INTO ${EXTRAS_SCHEMA}.late_aria VALUES (1), (2)`,
      ]),
    );
    try {
      await refusedByRecheck(created, `${EXTRAS_SCHEMA}.late_aria (Aria, TRANSACTIONAL=1, 2 rows)`);
    } finally {
      await onReplicaViaPrimary([`DROP TABLE IF EXISTS ${EXTRAS_SCHEMA}.late_aria`]);
    }
  });

  test("sync_binlog set to 0 on the replica while the snapshot is taken: discarded and refused naming it", async () => {
    const changed = racing(deps.driver, "during", async () => {
      await sql(lab(), "replica", "SET GLOBAL sync_binlog = 0");
    });
    try {
      await refusedByRecheck(changed, "sync_binlog=0: the binary log is not synced at each commit");
    } finally {
      await sql(lab(), "replica", "SET GLOBAL sync_binlog = 1");
    }
  });
});

test("DDL between the inventory and a lock-free snapshot: the verifier reports both differences, nothing corrupt", async () => {
  const ddl = racing(deps.driver, "before", () =>
    onReplicaViaPrimary([
      `CREATE TABLE ${EXTRAS_SCHEMA}.born_late (id INT PRIMARY KEY) ENGINE=InnoDB AS SELECT seq AS id FROM ${EXTRAS_SCHEMA}.seq_1_to_5`,
      `DROP TABLE ${EXTRAS_SCHEMA}.doomed`,
    ]),
  );
  const result = await backup("none", ddl);
  expect(result).toMatchObject({ lockMode: "none", lockMs: 0 });
  const manifest = await manifestOf(result);
  const listed = manifest.tables.filter((t) => t.schema === EXTRAS_SCHEMA).map((t) => t.table);
  expect(listed).toContain("doomed");
  expect(listed).not.toContain("born_late");

  const { result: verdict } = await runLabVerifier(lab(), { idleSeconds: 10 });
  expect(verdict).toMatchObject({ backupId: result.backupId, verdict: "failed", failedCheck: "tables" });
  const byName = Object.fromEntries(verdict.checks.map((c) => [c.name, c]));
  expect(byName.tables).toEqual({
    name: "tables",
    passed: false,
    detail: `missing after restore: ${EXTRAS_SCHEMA}.doomed; not in the manifest: ${EXTRAS_SCHEMA}.born_late`,
  });
  // Every other check passed: the restore started and recovered to a position between the bounds.
  expect(verdict.checks.filter((c) => !c.passed)).toEqual([byName.tables]);
  const recovered = verdict.report?.position.recovered;
  for (const field of ["gtidSlavePos", "gtidBinlogPos"] as const) {
    expect(domainZeroSeq(recovered?.[field])).toBeGreaterThan(domainZeroSeq(manifest.position[field]));
    expect(domainZeroSeq(recovered?.[field])).toBeLessThanOrEqual(
      domainZeroSeq(manifest.positionAfter?.[field]),
    );
  }
  expect(recovered?.preparedXa).toEqual([]);
  // Not corruption: every table the manifest lists and the restore holds passes CHECK TABLE.
  expect(verdict.tables.map((t) => t.table)).not.toContain("doomed");
  expect(verdict.tables.length).toBe(manifest.tables.length - 1);
  for (const table of verdict.tables) expect(table.check).toMatch(/^OK$|^sequence OK|support check/);
});
