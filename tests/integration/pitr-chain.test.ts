/**
 * The point-in-time chain proof (issue 14) on the lab, under sysbench load with the binlog archiver beside the
 * replica: snapshot A, load, snapshot B — the verifier proves A → B (A restored, the archive replayed to B's
 * GTID state, every table's checksum equal to B's). A write on the replica that its binlog does not record
 * (`SET sql_log_bin = 0`) before snapshot C fails B → C naming the table. A segment deleted from S3 before
 * snapshot D fails C → D as a gap naming the missing GTIDs. Nothing of a restore is left after each.
 */
import { DeleteObjectCommand } from "@aws-sdk/client-s3";
import type { ChainVerdict, StatusReport } from "../../contracts";
import type { VerificationResult } from "../../hostscripts/verify/result";
import type { PitrSummary } from "../../hostscripts/restore/window";
import { rootScript } from "../../lab/mariadb";
import { withLab } from "../support/lab";
import { cli, waitForArchive, waitForSegment } from "../support/pitr";
import { expectNoScratchLeft, runLabVerifier, takeBackup, withClients } from "./verify-support";

jest.setTimeout(900_000);

const lab = withLab({ load: true, pitr: true });

/** A backup of the replica, verified (with the chain proof that follows); segments handled on the way. */
async function snapshot(): Promise<{ backupId: string; result: VerificationResult }> {
  const backup = await takeBackup(lab());
  const { result } = await runLabVerifier(lab(), { idleSeconds: 120 });
  expect(result).toMatchObject({ outcome: "verified", backupId: backup.backupId });
  return { backupId: backup.backupId, result };
}

const chainOf = (result: VerificationResult): ChainVerdict => {
  expect(result.chain).toBeTruthy();
  return result.chain!.verdict;
};

let a: { backupId: string; result: VerificationResult };
let b: { backupId: string; result: VerificationResult };

test("snapshot A, load, snapshot B: the chain A → B is proven, every table's checksum equal", async () => {
  a = await snapshot();
  expect(a.result.chain ?? null).toBeNull();
  await new Promise((r) => setTimeout(r, 20_000));
  b = await snapshot();
  const chain = chainOf(b.result);
  const report = b.result.report!;
  console.log(
    `chain ${a.backupId} → ${b.backupId}: ${chain.replay?.transactions} transactions from ${chain.replay?.segments} segments replayed in ${chain.replay?.seconds}s; ` +
      `${chain.tablesCompared} checksums compared; proof ${chain.seconds}s; B's own verification ${report.timings.restoreSeconds}s ` +
      `(checks ${report.timings.checksSeconds}s, of which checksums ${report.timings.checksumSeconds}s)`,
  );
  expect(chain).toMatchObject({
    verdict: "verified",
    failure: null,
    from: { backupId: a.backupId },
    to: { backupId: b.backupId },
  });
  expect(chain.replay!.reachedGtid).toBe(chain.to.gtid);
  expect(chain.replay!.transactions).toBeGreaterThan(100);
  expect(chain.tablesCompared).toBe(report.tables.filter((t) => typeof t.checksum === "number").length);
  expect(chain.tablesCompared).toBeGreaterThan(5);
  await expectNoScratchLeft(lab());
  // A duplicate of B's message finds both verdicts and proves nothing again.
  const listed = await cli(["restore", "--config", lab().restoreConfigPath, "list"]);
  const proven = (listed.json.pitr as PitrSummary).proven;
  expect(proven).toEqual([expect.objectContaining({ from: chain.from.takenAt, to: chain.to.takenAt })]);
  // status shows the same proven window on the archiving host.
  const binlog = (await labStatus()).json.clusters[0].hosts[0].binlog;
  expect(binlog?.provenWindow).toMatchObject({
    from: chain.from.takenAt,
    to: chain.to.takenAt,
    fromBackupId: a.backupId,
  });
});

/** `mysql-backup status --json` over the lab's bucket. */
async function labStatus(): Promise<{ code: number; json: StatusReport }> {
  const { code, json } = await cli(["status", "--config", lab().statusConfigPath]);
  return { code, json: json as unknown as StatusReport };
}

test("a write on the replica its binlog does not record fails the next chain, naming the table", async () => {
  await rootScript(lab().replica.socket, [
    "SET SESSION sql_log_bin = 0",
    "UPDATE lab_pitr.marker SET committed_at = committed_at - INTERVAL 1 DAY ORDER BY id LIMIT 1",
  ]);
  const c = await snapshot();
  const chain = chainOf(c.result);
  expect(chain).toMatchObject({
    verdict: "failed",
    from: { backupId: b.backupId },
    to: { backupId: c.backupId },
    failure: { kind: "tables", tables: ["lab_pitr.marker"] },
  });
  expect(chain.failure!.detail).toMatch(/lab_pitr\.marker \(checksum \d+ after the replay, \d+ in B\)/);
  // status pages it like the alarm: critical (exit 2), naming the chain and the failure.
  const status = await labStatus();
  expect(status.code).toBe(2);
  const host = status.json.clusters[0].hosts[0];
  expect(host.binlog?.provenWindow).toBeNull();
  expect(host.reasons).toContainEqual({
    state: "critical",
    message: expect.stringContaining(
      `point-in-time chain ${b.backupId} → ${c.backupId} failed its proof: tables:`,
    ),
  });
  await expectNoScratchLeft(lab());
});

test("a segment deleted from S3 fails the next chain as a gap, naming the missing GTIDs", async () => {
  const after = Date.now();
  // A segment that begins after C (a segment can span the RPO, so "the archive passed C" is not enough).
  const victim = await waitForSegment(
    lab(),
    (e) => e.transactions.count > 0 && Date.parse(e.transactions.firstCommitAt ?? "") > after,
    `transactions that all committed after ${new Date(after).toISOString()}`,
    // The replica's binlog carries the primary's commit times: a replica behind a loaded primary is late.
    300_000,
  );
  await withClients(lab(), ({ s3 }) =>
    s3.send(new DeleteObjectCommand({ Bucket: lab().s3.bucket, Key: victim.segmentKey })),
  );
  await waitForArchive(lab(), Date.now() + 3_000);
  const d = await snapshot();
  const chain = chainOf(d.result);
  expect(chain).toMatchObject({ verdict: "failed", failure: { kind: "gap" } });
  const [domain, , beforeSeq] = victim.gtid.before.split("-").map(Number);
  const last = victim.gtid.last!;
  expect(chain.failure!.missing).toContain(`${domain}-*-${beforeSeq + 1}..`);
  expect(chain.failure!.detail).toContain("missing:");
  console.log(`deleted ${victim.segmentKey} (${victim.gtid.first}..${last}): ${chain.failure!.missing}`);
  await expectNoScratchLeft(lab());
});
