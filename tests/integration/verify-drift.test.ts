/**
 * Deeper proof against the lab: each verified backup is compared with the previous verified backup of the
 * cluster (a dropped table, and a table that lost most of its rows, are flagged), and the recovery point
 * is read from a heartbeat table in the restored data; the verdict is tagged on the backup's objects.
 */
import { GetObjectCommand } from "@aws-sdk/client-s3";
import { parseVerificationReport, verificationKey } from "../../contracts";
import { labAwsClients, sql, waitForReplicaCatchUp } from "../../lab/lab";
import { withLab } from "../support/lab";
import { ObjectTags, playObjectTagging } from "../support/s3-tagging";
import { labVerifyConfig, readMetrics, runLabVerifier, takeBackup, withClients } from "./verify-support";

jest.setTimeout(240_000);

const lab = withLab();

/** A backup of the replica once it has what the primary has, verified; returns the stored report. */
async function backupAndVerify() {
  await waitForReplicaCatchUp(lab());
  const backup = await takeBackup(lab());
  const { result, log } = await runLabVerifier(lab());
  expect(result).toMatchObject({ outcome: "verified", backupId: backup.backupId });
  const key = verificationKey({
    prefix: "backups",
    cluster: "lab",
    host: "replica1",
    backupId: backup.backupId,
  });
  const report = await withClients(lab(), async ({ s3 }) => {
    const object = await s3.send(new GetObjectCommand({ Bucket: lab().s3.bucket, Key: key }));
    return parseVerificationReport(JSON.parse(await object.Body!.transformToString()));
  });
  return { report, log };
}

test("a dropped table and a table that lost most rows are flagged against the previous verified backup", async () => {
  const first = await backupAndVerify();
  expect(first.report.drift).toEqual({
    previousBackupId: null,
    maxShrinkShare: 0.5,
    findings: [],
    note: "no earlier verified backup of this cluster",
  });

  await sql(lab(), "primary", "DROP TABLE lab_extras.articles");
  const dropped = await backupAndVerify();
  expect(dropped.report.verdict).toBe("verified");
  expect(dropped.report.drift).toMatchObject({
    previousBackupId: first.report.backupId,
    findings: [
      {
        schema: "lab_extras",
        table: "articles",
        kind: "vanished",
        previousRows: first.report.tables.find((t) => t.table === "articles")!.rows,
        rows: null,
      },
    ],
  });
  expect(dropped.log.lines).toEqual(
    expect.arrayContaining([
      expect.objectContaining({
        level: "warn",
        message: expect.stringMatching(/changed suspiciously.*lab_extras\.articles vanished/),
      }),
    ]),
  );

  // 90% of sbtest2 gone; sbtest3 loses 10%, within the allowed share.
  const size = lab().dataset.tableSize;
  await sql(lab(), "primary", "DELETE FROM sbtest.sbtest2 WHERE id > ?", [size / 10]);
  await sql(lab(), "primary", "DELETE FROM sbtest.sbtest3 WHERE id > ?", [size * 0.9]);
  const shrunk = await backupAndVerify();
  expect(shrunk.report.drift).toMatchObject({
    previousBackupId: dropped.report.backupId,
    findings: [{ schema: "sbtest", table: "sbtest2", kind: "shrank", previousRows: size, rows: size / 10 }],
  });
});

test("the recovery point comes from the heartbeat table and is emitted as RecoveryPointLagSeconds", async () => {
  // The last beat of a pt-heartbeat --utc that stopped 40 s before the backup (its format: ISO without zone).
  const beat = new Date(Date.now() - 40_000).toISOString().replace("Z", "");
  await sql(lab(), "primary", "CREATE DATABASE percona");
  await sql(
    lab(),
    "primary",
    "CREATE TABLE percona.heartbeat (ts VARCHAR(26) NOT NULL, server_id INT UNSIGNED NOT NULL PRIMARY KEY)",
  );
  await sql(lab(), "primary", "INSERT INTO percona.heartbeat VALUES (?, 1)", [beat]);
  const { report } = await backupAndVerify();
  expect(report.recoveryPoint).toMatchObject({ table: "percona.heartbeat", newestDataAt: `${beat}Z` });
  expect(report.recoveryPoint!.lagSeconds).toBeGreaterThanOrEqual(40);
  expect(report.recoveryPoint!.lagSeconds).toBeLessThan(100);
  expect((await readMetrics(lab())).at(-1)).toMatchObject({
    name: "RecoveryPointLagSeconds",
    value: report.recoveryPoint!.lagSeconds,
  });
});

test("the verdict is tagged on every archive chunk and the manifest, beside the retention class they were created with", async () => {
  // The emulator has no object tagging: S3's side of it is played on the wire (tests/support/s3-tagging.ts),
  // with the bucket policy's refusal to change or drop a retention tag; every other call goes to the emulator.
  const tags = new ObjectTags();
  const backup = await takeBackup(lab(), (s3) => playObjectTagging(s3, tags));
  const retention = { retention: backup.retention };
  for (const key of [...backup.archiveKeys, backup.manifestKey]) expect(tags.of(key)).toEqual(retention);

  const base = await labVerifyConfig(lab());
  const s3 = playObjectTagging(labAwsClients(lab()).s3, tags);
  try {
    const { result, log } = await runLabVerifier(lab(), {
      config: { ...base, s3: { tagObjects: true } },
      s3,
    });
    expect(result.outcome).toBe("verified");
    expect(log.lines.filter((l) => l.message.startsWith("could not tag"))).toEqual([]);
  } finally {
    s3.destroy();
  }
  expect(tags.refused).toEqual([]);
  for (const key of [...backup.archiveKeys, backup.manifestKey])
    expect(tags.of(key)).toEqual({ ...retention, verified: "true" });
});
