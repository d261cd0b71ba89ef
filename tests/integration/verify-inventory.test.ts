/**
 * Every object that holds data is in the manifest's inventory and checked after the restore, each as its kind
 * allows: a sequence (read and judged by its one row), a system-versioned table (with its history), a
 * partitioned table, Aria and MyISAM tables — and views are left out. Every table's content checksum in the
 * report is the one the replica itself computes (the replica is idle here). Real lab: MariaDB 10.11, btrfs,
 * fauxqs.
 */
import { GetObjectCommand } from "@aws-sdk/client-s3";
import { parseManifest } from "../../contracts";
import { rootQuery, rootScript } from "../../lab/mariadb";
import { waitForReplicaCatchUp } from "../../lab/lab";
import { withLab } from "../support/lab";
import { runLabVerifier, takeBackup, withClients } from "./verify-support";

jest.setTimeout(240_000);

const lab = withLab();
const SCHEMA = "inventory_kinds";

beforeAll(async () => {
  await rootScript(lab().primary.socket, [
    `CREATE DATABASE ${SCHEMA}`,
    `USE ${SCHEMA}`,
    "CREATE SEQUENCE order_ids START WITH 1000 INCREMENT BY 10",
    "SELECT NEXTVAL(order_ids)",
    "CREATE TABLE prices (id INT PRIMARY KEY, price DECIMAL(8,2) NOT NULL) WITH SYSTEM VERSIONING",
    "INSERT INTO prices SELECT seq, seq FROM seq_1_to_50",
    "UPDATE prices SET price = price * 2 WHERE id <= 20",
    "CREATE TABLE readings (id INT NOT NULL, taken DATE NOT NULL, PRIMARY KEY (id, taken)) " +
      "PARTITION BY RANGE (YEAR(taken)) (PARTITION p2025 VALUES LESS THAN (2026), PARTITION pmax VALUES LESS THAN MAXVALUE)",
    "INSERT INTO readings SELECT seq, '2025-12-01' + INTERVAL seq DAY FROM seq_1_to_100",
    "CREATE TABLE journal (id INT PRIMARY KEY, note VARCHAR(32)) ENGINE=Aria TRANSACTIONAL=1",
    "INSERT INTO journal SELECT seq, 'aria' FROM seq_1_to_30",
    "CREATE TABLE archive_rows (id INT PRIMARY KEY) ENGINE=MyISAM",
    "INSERT INTO archive_rows SELECT seq FROM seq_1_to_40",
    "CREATE VIEW cheap_prices AS SELECT id FROM prices WHERE price < 10",
  ]);
  await waitForReplicaCatchUp(lab());
});

test("the inventory holds every kind, the verifier checks each, and views are left out", async () => {
  const backup = await takeBackup(lab());
  const manifest = await withClients(lab(), async ({ s3 }) => {
    const object = await s3.send(new GetObjectCommand({ Bucket: lab().s3.bucket, Key: backup.manifestKey }));
    return parseManifest(JSON.parse(await object.Body!.transformToString()));
  });
  const listed = manifest.tables.filter((t) => t.schema === SCHEMA);
  expect(listed).toEqual([
    { schema: SCHEMA, table: "archive_rows", engine: "MyISAM", type: "BASE TABLE" },
    { schema: SCHEMA, table: "journal", engine: "Aria", type: "BASE TABLE" },
    { schema: SCHEMA, table: "order_ids", engine: "InnoDB", type: "SEQUENCE" },
    { schema: SCHEMA, table: "prices", engine: "InnoDB", type: "SYSTEM VERSIONED" },
    { schema: SCHEMA, table: "readings", engine: "InnoDB", type: "BASE TABLE", partitioned: true },
  ]);
  expect(manifest.tables.some((t) => t.table === "cheap_prices" || t.table === "recent_events")).toBe(false);

  const { result } = await runLabVerifier(lab(), { idleSeconds: 10 });
  expect(result).toMatchObject({ outcome: "verified", verdict: "verified", backupId: backup.backupId });
  const checked = Object.fromEntries(
    result.tables.filter((t) => t.schema === SCHEMA).map((t) => [t.table, t]),
  );
  expect(checked.order_ids).toMatchObject({
    type: "SEQUENCE",
    rows: 1,
    check: "sequence OK: next value 11000 (1…9223372036854775806, increment 10)",
  });
  // 50 current rows; 20 updated rows left 20 history rows behind.
  expect(checked.prices).toMatchObject({ type: "SYSTEM VERSIONED", rows: 50, historyRows: 70, check: "OK" });
  expect(checked.readings).toMatchObject({ partitioned: true, rows: 100, check: "OK" });
  expect(checked.journal).toMatchObject({ engine: "Aria", rows: 30, check: "OK" });
  expect(checked.archive_rows).toMatchObject({ engine: "MyISAM", rows: 40, check: "OK" });
  // The content checksums are the replica's own, for every engine; a sequence has none.
  expect(checked.order_ids.checksum).toBeNull();
  for (const table of ["archive_rows", "journal", "prices", "readings"]) {
    const [own] = await rootQuery(lab().replica.socket, `CHECKSUM TABLE ${SCHEMA}.${table} EXTENDED`);
    expect([table, checked[table].checksum]).toEqual([table, Number(own.Checksum)]);
  }
  const everyTable = result.tables.filter((t) => t.type !== "SEQUENCE");
  expect(everyTable.length).toBeGreaterThan(5);
  expect(everyTable.every((t) => typeof t.checksum === "number")).toBe(true);
  expect(result.report?.timings.checksumSeconds).toBeGreaterThanOrEqual(0);
  console.log(
    `per-table checksums: ${everyTable.length} tables in ${result.report?.timings.checksumSeconds}s of ${result.report?.timings.checksSeconds}s of checks`,
  );
  const tablesCheck = result.checks.find((c) => c.name === "tables");
  expect(tablesCheck?.detail).toContain(
    "1 sequences read and consistent, 1 system-versioned with their history",
  );
});
