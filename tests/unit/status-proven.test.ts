/**
 * The proven window in `status`: the cluster's newest run of verified point-in-time chains, read only where
 * the listing shows a `chain-verification.json`, followed back along `from` at most MAX_CHAIN_LINKS times; a
 * newest chain that failed is a critical finding on B's host. The verdicts are real documents, validated by
 * the contract's parser as `status` reads them; only S3 is replaced (a map of keys).
 */
import type { S3Client } from "@aws-sdk/client-s3";
import {
  chainVerdictKey,
  drillVerdictKey,
  newBackupId,
  type ChainVerdict,
  type DrillVerdict,
} from "../../contracts";
import type { Read, ScannedBackup } from "../../hostscripts/common/listing";
import {
  MAX_CHAIN_LINKS,
  chainFailure,
  drillFailure,
  readLastDrill,
  readProvenChain,
} from "../../hostscripts/status/proven";
import { StatusReader, type HostScan } from "../../hostscripts/status/scan";

const T0 = Date.parse("2026-11-20T02:00:00Z");
const DAY = 86_400_000;
/** Backup i of the cluster, taken on day i, alternating between two replicas. */
const backup = (i: number) => ({
  host: i % 2 === 0 ? "db1" : "db2",
  backupId: newBackupId(new Date(T0 + i * DAY), Buffer.from([i, 0, 0])),
});
const takenAt = (i: number) => new Date(T0 + i * DAY + 1000).toISOString();

function chain(a: number, b: number, verdict: "verified" | "failed" = "verified"): ChainVerdict {
  const end = (i: number) => ({ ...backup(i), gtid: `0-1-${i * 1000}`, takenAt: takenAt(i) });
  return {
    formatVersion: 1,
    bucket: "b",
    cluster: "orders",
    from: end(a),
    to: end(b),
    verdict,
    failure:
      verdict === "verified"
        ? null
        : { kind: "tables", detail: "1 table differs: shop.orders", missing: null, tables: ["shop.orders"] },
    replay: { seconds: 1.5, transactions: 1000, segments: 3, reachedGtid: `0-1-${b * 1000}` },
    tablesCompared: 9,
    seconds: 4.7,
    verifiedAt: takenAt(b),
    verifier: { host: "verifier-1" },
  };
}

/** A reader whose objects are `stored` (JSON by key), parsed by the real parsers; reads are counted. */
class Stored extends StatusReader {
  readonly reads: string[] = [];
  constructor(private readonly stored: Map<string, unknown>) {
    super({} as S3Client, "b", "backups");
  }
  override async read<T>(key: string, parse: (value: unknown) => T): Promise<Read<T> | null> {
    this.reads.push(key);
    const value = this.stored.get(key);
    return value === undefined ? null : { value: parse(value) };
  }
}

/** The scans and the bucket of chains: backups 0..n-1, a chain verdict beside each B given. */
function estate(n: number, chains: ChainVerdict[]): { reader: Stored; scans: HostScan[] } {
  const stored = new Map<string, unknown>();
  for (const c of chains) stored.set(chainVerdictKey({ prefix: "backups", cluster: "orders", ...c.to }), c);
  const withChain = new Set(chains.map((c) => c.to.backupId));
  const scans = ["db1", "db2"].map((host): HostScan => {
    const backups: ScannedBackup[] = Array.from({ length: n }, (_, i) => backup(i))
      .filter((b) => b.host === host)
      .map((b) => ({
        backupId: b.backupId,
        takenAt: new Date(T0),
        complete: true,
        archiveBytes: 1,
        hasVerdict: true,
        hasChainVerdict: withChain.has(b.backupId),
      }))
      .reverse();
    return { host, backups, newestManifest: null, verdicts: new Map(), verdictsNotRead: 0 };
  });
  return { reader: new Stored(stored), scans };
}

test("a run of verified chains across replicas: the window from the oldest A to the newest B", async () => {
  const { reader, scans } = estate(4, [chain(0, 1), chain(1, 2), chain(2, 3)]);
  const proven = await readProvenChain(reader, "orders", scans);
  expect(proven.window).toEqual({
    from: takenAt(0),
    to: takenAt(3),
    seconds: 3 * 86_400,
    fromBackupId: backup(0).backupId,
    toGtid: "0-1-3000",
  });
  expect([proven.failed, proven.host]).toEqual([null, "db2"]);
  expect(reader.reads).toHaveLength(3);
  expect(chainFailure(proven)).toEqual([]);
});

test("the run stops at a failed chain: the window starts at the failed chain's B", async () => {
  const { reader, scans } = estate(4, [chain(0, 1), chain(1, 2, "failed"), chain(2, 3)]);
  const proven = await readProvenChain(reader, "orders", scans);
  expect(proven.window).toMatchObject({ from: takenAt(2), to: takenAt(3), fromBackupId: backup(2).backupId });
});

test("the run stops where no chain was judged (a snapshot before the archive began)", async () => {
  const { reader, scans } = estate(5, [chain(0, 1), chain(2, 3), chain(3, 4)]);
  const proven = await readProvenChain(reader, "orders", scans);
  expect(proven.window).toMatchObject({ from: takenAt(2), fromBackupId: backup(2).backupId });
  // B = 2 has no chain verdict in the listing: it is not read.
  expect(reader.reads).toHaveLength(2);
});

test("the newest chain failed: no proven window, and a critical finding on B's host naming the tables", async () => {
  const { reader, scans } = estate(3, [chain(0, 1), chain(1, 2, "failed")]);
  const proven = await readProvenChain(reader, "orders", scans);
  expect([proven.window, proven.host]).toEqual([null, "db1"]);
  const [finding] = chainFailure(proven);
  expect(finding.state).toBe("critical");
  expect(finding.message).toContain(
    `point-in-time chain ${backup(1).backupId} → ${backup(2).backupId} failed its proof: tables: 1 table differs: shop.orders`,
  );
  expect(finding.message).toContain(
    `s3://b/backups/orders/db1/${backup(2).backupId}/chain-verification.json`,
  );
});

test("no chain judged yet: null, and nothing read", async () => {
  const { reader, scans } = estate(3, []);
  expect(await readProvenChain(reader, "orders", scans)).toEqual({
    window: null,
    failed: null,
    host: null,
    url: null,
  });
  expect(reader.reads).toEqual([]);
});

test(`a long run is followed back ${MAX_CHAIN_LINKS} links at most`, async () => {
  const chains = Array.from({ length: 20 }, (_, i) => chain(i, i + 1));
  const { reader, scans } = estate(21, chains);
  const proven = await readProvenChain(reader, "orders", scans);
  expect(reader.reads).toHaveLength(MAX_CHAIN_LINKS);
  expect(proven.window).toMatchObject({
    to: takenAt(20),
    fromBackupId: backup(20 - MAX_CHAIN_LINKS).backupId,
  });
});

/** A drill verdict beside backup `b`, from backup `a`. */
function drill(a: number, b: number, verdict: "passed" | "failed"): DrillVerdict {
  return {
    formatVersion: 1,
    bucket: "b",
    cluster: "orders",
    from: { ...backup(a), gtid: `0-1-${a * 1000}`, completedAt: takenAt(a) },
    to: { ...backup(b), takenAt: takenAt(b) },
    point: { seed: 7, window: { from: takenAt(a), to: takenAt(b) }, at: takenAt(a + 0.5) },
    expected: { gtid: `0-1-${a * 1000 + 500}`, segmentsFromLedger: 3, segmentsRead: 1, lastGtid: null },
    verdict,
    failure: verdict === "passed" ? null : { kind: "gtid", detail: "answered at 0-1-1400", tables: [] },
    restore: {
      secondsToQueryable: 61.5,
      reachedGtid: `0-1-${a * 1000 + 500}`,
      transactions: 500,
      segments: 2,
      replaySeconds: 3,
    },
    tablesChecked: 9,
    seconds: 70,
    verifiedAt: takenAt(b),
    verifier: { host: "verifier-1" },
  };
}

test("the newest drill is read where the listing shows one; a failed one is critical on its B's host", async () => {
  const { reader, scans } = estate(4, []);
  const drills = [drill(1, 2, "passed"), drill(2, 3, "failed")];
  for (const d of drills)
    (reader as unknown as { stored: Map<string, unknown> }).stored.set(
      drillVerdictKey({ prefix: "backups", cluster: "orders", ...d.to }),
      d,
    );
  for (const scan of scans)
    for (const b of scan.backups) b.hasDrillVerdict = drills.some((d) => d.to.backupId === b.backupId);
  const newest = await readLastDrill(reader, "orders", scans);
  expect(reader.reads).toHaveLength(1);
  expect(newest).toMatchObject({ host: backup(3).host, verdict: { point: { at: takenAt(2.5) } } });
  expect(drillFailure(newest!)).toEqual([
    {
      state: "critical",
      message: expect.stringContaining(
        `restore drill to ${takenAt(2.5)} from ${backup(2).backupId} failed: gtid:`,
      ),
    },
  ]);
  expect(drillFailure({ verdict: drills[0], url: "s3://b/k" })).toEqual([]);
  expect(await readLastDrill(estate(4, []).reader, "orders", estate(4, []).scans)).toBeNull();
});
