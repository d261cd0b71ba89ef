/**
 * The point-in-time chain proof (issue 14) on the lab, under sysbench load with the binlog archiver beside the
 * replica: snapshot A, load, snapshot B — the verifier proves A → B (A's tree kept since its verification, the
 * archive replayed to B's GTID state, every table's checksum equal to B's). A write on the replica that its
 * binlog does not record (`SET sql_log_bin = 0`) before snapshot C fails B → C naming the table (B restored
 * again, alongside C's verification). A segment deleted from S3 before snapshot D fails C → D as a gap naming
 * the missing GTIDs. After the proven chain A → B, the restore drill to
 * a random second between A and B passes at the GTID state `mariadb-binlog` (the oracle) says was committed
 * then; a drill across the deleted segment fails, naming the state the archive holds at its point and the
 * restore's refusal. SIGTERM during the next chain proof stops it and releases the message, with no verdict.
 * Nothing of a restore is left after each.
 */
import { hostname } from "node:os";
import { DeleteObjectCommand, HeadObjectCommand } from "@aws-sdk/client-s3";
import { $ } from "zx";
import {
  chainVerdictKey,
  drillVerdictKey,
  parseDrillVerdict,
  type BinlogSegmentEntry,
  type ChainVerdict,
  type StatusReport,
  type VerifyConfig,
} from "../../contracts";
import { memoryLogger } from "../../hostscripts/common/log";
import { fileSink } from "../../hostscripts/common/metrics";
import { drillBetween } from "../../hostscripts/verify/drill";
import { drillPoint, drillSeconds } from "../../hostscripts/verify/drill-point";
import type { VerificationResult } from "../../hostscripts/verify/result";
import type { PitrSummary } from "../../hostscripts/restore/window";
import { rootScript } from "../../lab/mariadb";
import { processesUsing } from "../../lab/processes";
import { withLab } from "../support/lab";
import { binlogOracle, cli, lastCommittedAtOrBefore, waitForArchive, waitForSegment } from "../support/pitr";
import {
  expectNoScratchLeft,
  labVerifyConfig,
  readMetrics,
  runLabVerifier,
  takeBackup,
  withClients,
} from "./verify-support";

jest.setTimeout(900_000);

const lab = withLab({ load: true, pitr: true });

type Snapshot = { backupId: string; result: VerificationResult; log: ReturnType<typeof memoryLogger> };

/** A backup of the replica, verified (with the chain proof that follows); segments handled on the way. */
async function snapshot(config?: VerifyConfig): Promise<Snapshot> {
  const backup = await takeBackup(lab());
  const { result, log } = await runLabVerifier(lab(), { idleSeconds: 120, config });
  expect(result).toMatchObject({ outcome: "verified", backupId: backup.backupId });
  return { backupId: backup.backupId, result, log };
}

/** When the verifier began restoring the chain's start alongside the snapshot's verification (null: it did not). */
function restoredAlongsideAt(log: Snapshot["log"]): number | null {
  const line = log.lines.find((l) => /restoring the chain's start alongside/.test(l.message));
  return line === undefined ? null : Date.parse(String(line.time));
}

const chainOf = (result: VerificationResult): ChainVerdict => {
  expect(result.chain).toBeTruthy();
  return result.chain!.verdict;
};

let a: Snapshot;
let b: Snapshot;
let c: Snapshot;
let d: Snapshot;

test("snapshot A, load, snapshot B: the chain A → B is proven on A's kept tree, every table's checksum equal", async () => {
  // A has no verified snapshot before it, so no chain and nothing restored for one; its verified tree is kept.
  a = await snapshot();
  expect(a.result.chain ?? null).toBeNull();
  expect(restoredAlongsideAt(a.log)).toBeNull();
  const keptA = await expectNoScratchLeft(lab());
  expect(keptA).toEqual([expect.stringMatching(new RegExp(`^[0-9a-f]{16}-${a.backupId}$`))]);
  await new Promise((r) => setTimeout(r, 20_000));
  // Restoring alongside is asked for, but A's kept tree makes it needless: the proof downloads nothing of A
  // (the drill after it restores A from S3, as an operator would), and replays onto A's tree while B is
  // verified.
  const config = await labVerifyConfig(lab());
  b = await snapshot({ ...config, chain: { ...config.chain, restoreAlongside: true } });
  const chain = chainOf(b.result);
  expect(b.result.chain!.start).toBe("kept-alongside");
  expect(restoredAlongsideAt(b.log)).toBeNull();
  const proofLines = b.log.lines.filter((l) => l.chain !== undefined);
  expect(proofLines.some((l) => /proving the point-in-time chain/.test(l.message))).toBe(true);
  expect(proofLines.filter((l) => /downloading and extracting/.test(l.message))).toEqual([]);
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
  // The replay onto A's tree began alongside B's verification, and the proof counts from then.
  const replaying = b.log.lines.find((l) => /replaying onto the chain's start alongside/.test(l.message));
  expect(replaying).toBeDefined();
  expect(Date.parse(String(replaying!.time))).toBeLessThan(Date.parse(report.verifiedAt));
  expect(Date.parse(chain.verifiedAt) - Date.parse(String(replaying!.time))).toBeGreaterThanOrEqual(
    chain.seconds * 1000 - 1000,
  );
  expect(chain.replay!.reachedGtid).toBe(chain.to.gtid);
  expect(chain.replay!.transactions).toBeGreaterThan(100);
  expect(chain.tablesCompared).toBe(report.tables.filter((t) => typeof t.checksum === "number").length);
  expect(chain.tablesCompared).toBeGreaterThan(5);
  // A's tree was taken by the proof and removed with it; B's is kept for the next one.
  expect(await expectNoScratchLeft(lab())).toEqual([keptA[0]!.replace(a.backupId, b.backupId)]);
  await expectDrillPassed(chain);
  const listed = await cli(["restore", "--config", lab().restoreConfigPath, "list"]);
  const pitr = listed.json.pitr as PitrSummary;
  expect(pitr.drill).toMatchObject({
    backupId: b.backupId,
    fromBackupId: a.backupId,
    verdict: "passed",
    at: b.result.drill!.verdict.point.at,
  });
  const proven = pitr.proven;
  expect(proven).toEqual([expect.objectContaining({ from: chain.from.takenAt, to: chain.to.takenAt })]);
  // status shows the same proven window on the archiving host.
  const binlog = (await labStatus()).json.clusters[0].hosts[0].binlog;
  expect(binlog?.provenWindow).toMatchObject({
    from: chain.from.takenAt,
    to: chain.to.takenAt,
    fromBackupId: a.backupId,
  });
  expect(binlog?.lastDrill).toEqual({
    backupId: b.backupId,
    verifiedAt: b.result.drill!.verdict.verifiedAt,
    at: b.result.drill!.verdict.point.at,
    verdict: "passed",
    rtoSeconds: b.result.drill!.verdict.restore!.secondsToQueryable,
  });
});

/**
 * B's drill: a point strictly between A's completion and B, drawn again from its seed; the server answered at
 * the state the verifier computed, which is `mariadb-binlog`'s last transaction at or before the point; CHECK
 * TABLE passed on every table; its verdict in S3 and its RTO in the metrics.
 */
async function expectDrillPassed(chain: ChainVerdict): Promise<void> {
  expect(b.result.drill).toBeTruthy();
  const drill = b.result.drill!.verdict;
  const at = Date.parse(drill.point.at);
  console.log(
    `drill to ${drill.point.at} (seed ${drill.point.seed}, window ${drill.point.window.from} … ${drill.point.window.to}): ` +
      `${drill.verdict}, queryable after ${drill.restore?.secondsToQueryable}s, ${drill.restore?.transactions} transactions ` +
      `replayed in ${drill.restore?.replaySeconds}s, expected ${drill.expected.gtid} (${drill.expected.segmentsFromLedger} segments from the ledger, ` +
      `${drill.expected.segmentsRead} read); ${drill.tablesChecked} tables checked; ${drill.seconds}s in all`,
  );
  expect(drill).toMatchObject({
    verdict: "passed",
    failure: null,
    from: { backupId: a.backupId, gtid: chain.from.gtid },
    to: { backupId: b.backupId },
  });
  expect(at).toBeGreaterThan(Date.parse(drill.point.window.from));
  expect(at).toBeLessThan(Date.parse(chain.to.takenAt));
  expect(drillPoint(drill.point.seed, drill.point.window)?.toISOString()).toBe(drill.point.at);
  expect(drill.restore!.reachedGtid).toBe(drill.expected.gtid);
  expect(drill.expected.gtid).toBe(lastCommittedAtOrBefore(await binlogOracle(lab().primary.datadir), at));
  expect(drill.tablesChecked).toBeGreaterThan(5);
  expect(drill.restore!.secondsToQueryable).toBeGreaterThan(0);
  const stored = await withClients(lab(), async ({ s3 }) => {
    const { GetObjectCommand } = await import("@aws-sdk/client-s3");
    const key = drillVerdictKey({
      prefix: "backups",
      cluster: chain.cluster,
      host: chain.to.host,
      backupId: b.backupId,
    });
    const object = await s3.send(new GetObjectCommand({ Bucket: lab().s3.bucket, Key: key }));
    return parseDrillVerdict(JSON.parse(await object.Body!.transformToString()));
  });
  expect(stored).toEqual(drill);
  const metrics = await readMetrics(lab());
  expect(metrics).toContainEqual(
    expect.objectContaining({ name: "PitrRestoreSeconds", value: drill.restore!.secondsToQueryable }),
  );
}

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
  // This chain is proven without B's kept tree: B restored alongside C's verification (the default from 4
  // cores; this machine may have fewer), begun before C's verdict, and the proof counts from then.
  const config = await labVerifyConfig(lab());
  c = await snapshot({ ...config, chain: { ...config.chain, restoreAlongside: true, keepVerified: false } });
  const alongside = restoredAlongsideAt(c.log);
  expect(alongside).not.toBeNull();
  expect(alongside!).toBeLessThan(Date.parse(c.result.report!.verifiedAt));
  const chain = chainOf(c.result);
  expect(c.result.chain!.start).toBe("alongside");
  expect(Date.parse(chain.verifiedAt) - alongside!).toBeGreaterThanOrEqual(chain.seconds * 1000 - 1000);
  expect(c.result.drill ?? null).toBeNull();
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
  await waitForArchive(lab(), Date.now() + 3_000, 300_000);
  // C's tree was not kept: C is restored after D's verdict (the default below 4 cores).
  const config = await labVerifyConfig(lab());
  d = await snapshot({ ...config, chain: { ...config.chain, restoreAlongside: false } });
  const chain = chainOf(d.result);
  expect(d.result.chain!.start).toBe("after");
  expect(chain).toMatchObject({ verdict: "failed", failure: { kind: "gap" } });
  const [domain, , beforeSeq] = victim.gtid.before.split("-").map(Number);
  const last = victim.gtid.last!;
  expect(chain.failure!.missing).toContain(`${domain}-*-${beforeSeq + 1}..`);
  expect(chain.failure!.detail).toContain("missing:");
  console.log(`deleted ${victim.segmentKey} (${victim.gtid.first}..${last}): ${chain.failure!.missing}`);
  await expectNoScratchLeft(lab());
  await expectDrillAcrossGapFails(chain, victim);
});

/**
 * A drill from C to a point just after the deleted segment (the seed injected to draw it): the restore is
 * refused, and the verdict names the gap and the state the archive reaches at the point.
 */
async function expectDrillAcrossGapFails(chain: ChainVerdict, victim: BinlogSegmentEntry): Promise<void> {
  const point = Math.ceil(Date.parse(victim.transactions.lastCommitAt!) / 1000) + 1;
  const report = c.result.report!;
  const from = { ...chain.from, gtid: report.position.recovered!.gtidBinlogPos! };
  const config = await labVerifyConfig(lab());
  const result = await withClients(lab(), ({ s3 }) =>
    drillBetween(
      config,
      { prefix: "backups", cluster: chain.cluster, host: chain.to.host, backupId: chain.to.backupId },
      { ...chain, from },
      {
        s3,
        $: $({ quiet: true }),
        metrics: fileSink(lab().metricsPath),
        log: memoryLogger(),
        now: () => new Date(),
        hostname: hostname(),
        drillSeed: (window) => point - drillSeconds(window.from, window.to)!.first,
      },
    ),
  );
  const drill = result!.verdict;
  console.log(`drill across the gap: ${drill.failure?.kind}: ${drill.failure?.detail}`);
  expect(drill).toMatchObject({
    verdict: "failed",
    point: { at: new Date(point * 1000).toISOString() },
    failure: { kind: "restore" },
    restore: null,
  });
  expect(drill.failure!.detail).toContain("missing:");
  expect(drill.failure!.detail).toContain(`the archive holds ${drill.expected.gtid} at the point`);
  expect(drill.failure!.detail).toMatch(/no archived segment continues/);
  expect(await readMetrics(lab())).toContainEqual(expect.objectContaining({ name: "PitrDrillFailed" }));
  await expectNoScratchLeft(lab());
}

test("SIGTERM during a chain proof stops its replay, removes its scratch server and releases the message", async () => {
  const e = await takeBackup(lab());
  const controller = new AbortController();
  let seen: string | null = null;
  // Aborts the verifier once the chain proof's server (on the scratch copy of D) runs: the replay's phase.
  const watcher = (async () => {
    while (!controller.signal.aborted) {
      const server = (await processesUsing(lab().dir)).find((p) => p.command.includes("/scratch/chain-"));
      if (server !== undefined) {
        seen = server.command;
        controller.abort();
        return;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  // A restored after E's verdict: a replay onto a kept tree runs alongside E's verification, while this
  // process's main thread extracts E, too briefly for the watcher's turns to see it.
  const config = await labVerifyConfig(lab());
  const { result, log } = await runLabVerifier(lab(), {
    idleSeconds: 120,
    signal: controller.signal,
    config: { ...config, chain: { ...config.chain, restoreAlongside: false, keepVerified: false } },
  });
  controller.abort();
  await watcher;
  expect(seen).not.toBeNull();
  expect(result).toMatchObject({ outcome: "interrupted", backupId: e.backupId });
  expect(log.lines.some((l) => /proving the point-in-time chain/.test(l.message))).toBe(true);
  const { cluster, to } = b.result.chain!.verdict;
  const ref = { prefix: "backups", cluster, host: to.host, backupId: e.backupId };
  await withClients(lab(), async ({ s3 }) => {
    for (const key of [chainVerdictKey(ref), drillVerdictKey(ref)])
      await expect(s3.send(new HeadObjectCommand({ Bucket: lab().s3.bucket, Key: key }))).rejects.toThrow();
  });
  await expectNoScratchLeft(lab());
});

test("SIGTERM during a replay begun alongside a verification stops it, and removes the kept tree it took", async () => {
  // E's message, released above, comes back: its verdict stands, and its chain from D is proven again, on D's
  // kept tree (E's proof above restored D instead), the replay begun at once. The verifier is stopped as that
  // replay starts applying.
  const controller = new AbortController();
  let abortedAt: string | null = null;
  const { result, log } = await runLabVerifier(lab(), {
    idleSeconds: 120,
    signal: controller.signal,
    onLog: (line) => {
      if (line.chain !== undefined && line.message === "replaying" && abortedAt === null) {
        abortedAt = String(line.chain);
        controller.abort();
      }
    },
  });
  expect(abortedAt).toBe(`${d.backupId} → ${result.backupId}`);
  expect(result).toMatchObject({ outcome: "interrupted" });
  expect(log.lines.some((l) => /replaying onto the chain's start alongside/.test(l.message))).toBe(true);
  const { cluster } = b.result.chain!.verdict;
  const ref = { prefix: "backups", cluster, host: "replica1", backupId: result.backupId! };
  await withClients(lab(), async ({ s3 }) => {
    await expect(
      s3.send(new HeadObjectCommand({ Bucket: lab().s3.bucket, Key: chainVerdictKey(ref) })),
    ).rejects.toThrow();
  });
  const kept = await expectNoScratchLeft(lab());
  expect(kept.filter((name) => name.endsWith(d.backupId))).toEqual([]);
});
