import type { S3Client } from "@aws-sdk/client-s3";
import {
  chainVerdictKey,
  drillVerdictKey,
  parseChainVerdict,
  parseDrillVerdict,
  type ChainVerdict,
  type RestoreConfig,
} from "../../contracts";
import { getObjectOrNull, s3Call } from "../common/s3";
import { listArchive, readArchive, type ArchivedEpoch } from "./archive";
import { restorableWindows, type PitrWindow, type WindowSnapshot } from "../common/pitr-chain";
import type { ListedBackup } from "./list";
import { ObjectProblem, readManifest } from "./objects";
import { manifestStart } from "../common/gtid-state";
import { prefixOf, verifiedManifest } from "./point";

/**
 * The restorable window for `restore list`: from each verified snapshot, how far the archived chain reaches
 * without a gap; overlapping spans merge into windows ("any second from … to …"). Also what the archive holds
 * per chain, and every gap an epoch record names.
 */

/** One archiving chain. */
export interface ArchivedChainSummary {
  host: string;
  epoch: string;
  reason: string | null;
  segments: number;
  bytes: number;
  firstCommitAt: string | null;
  lastCommitAt: string | null;
  /** Segments uploaded without their ledger entry (an upload cut short): not used. */
  incomplete: number;
  /** The GTIDs the epoch record says were lost before it. */
  missing: string | null;
}

/**
 * A span the verifier has proven (chain-verification.json, contracts/chain-verdict.ts): consecutive verified
 * chains A → B → C merge into one span from A to C. Any point inside was replayed and compared by the
 * verifier, not only archived.
 */
export interface ProvenWindow {
  /** When the first snapshot of the span was taken, and the last. */
  from: string;
  to: string;
  /** The snapshots the span joins, oldest first. */
  snapshots: string[];
}

/** The newest PITR drill (contracts/drill-verdict.ts): when, to which point, how long, and its verdict. */
export interface DrillSummary {
  /** The snapshot beside which it lies (B), and the one restored (A). */
  backupId: string;
  fromBackupId: string;
  verifiedAt: string;
  /** The point T restored to, and the seed that drew it. */
  at: string;
  seed: number;
  verdict: "passed" | "failed";
  /** The measured PITR RTO (seconds to queryable at T), when the restore answered. */
  rtoSeconds: number | null;
  /** The GTID state the archive holds at T; what failed, if it did. */
  expectedGtid: string;
  failure: string | null;
}

/** What `restore list` shows about point-in-time recovery. */
export interface PitrSummary {
  windows: PitrWindow[];
  /** The proven windows (chains the verifier replayed and compared), oldest first. */
  proven: ProvenWindow[];
  /** The newest restore drill, or null when none has run. */
  drill: DrillSummary | null;
  chains: ArchivedChainSummary[];
}

/** Builds the summary from the verified backups and the archive. */
export async function pitrSummary(
  s3: S3Client,
  config: RestoreConfig,
  backups: ListedBackup[],
): Promise<PitrSummary> {
  const { bucket, cluster } = config.restore;
  const epochs = await readArchive(s3, bucket, await listArchive(s3, bucket, prefixOf(config), cluster));
  const snapshots: WindowSnapshot[] = [];
  for (const backup of backups.filter((b) => b.complete && b.verdict === "verified")) {
    const manifest = await readManifest(s3, bucket, backup.manifestKey, verifiedManifest(backup)).then(
      (read) => read.manifest,
      (error: unknown) => {
        if (error instanceof ObjectProblem) return null;
        throw error;
      },
    );
    const start = manifest === null ? null : manifestStart(manifest);
    if (manifest === null || start === null) continue;
    snapshots.push({
      backupId: backup.backupId,
      completedAt: manifest.completedAt,
      flavor: manifest.server.flavor,
      start,
    });
  }
  return {
    windows: restorableWindows(epochs, snapshots),
    proven: await provenWindows(s3, config, backups),
    drill: await newestDrill(s3, config, backups),
    chains: epochs.map(summarize),
  };
}

/** The verified chains of the cluster's verified snapshots, joined where one's end is the next one's start. */
async function provenWindows(
  s3: S3Client,
  config: RestoreConfig,
  backups: ListedBackup[],
): Promise<ProvenWindow[]> {
  const { bucket, cluster } = config.restore;
  const chains: ChainVerdict[] = [];
  for (const backup of backups.filter((b) => b.complete && b.verdict === "verified")) {
    const key = chainVerdictKey({
      prefix: prefixOf(config),
      cluster,
      host: backup.host,
      backupId: backup.backupId,
    });
    const response = await s3Call(`read s3://${bucket}/${key}`, () => getObjectOrNull(s3, bucket, key));
    if (response === null) continue;
    const verdict = parseChainVerdict(JSON.parse((await response.Body?.transformToString()) ?? ""));
    if (verdict.verdict === "verified") chains.push(verdict);
  }
  const proven: ProvenWindow[] = [];
  for (const chain of chains.sort((x, y) => x.from.takenAt.localeCompare(y.from.takenAt))) {
    const last = proven.at(-1);
    if (last !== undefined && last.snapshots.at(-1) === chain.from.backupId) {
      last.to = chain.to.takenAt;
      last.snapshots.push(chain.to.backupId);
    } else
      proven.push({
        from: chain.from.takenAt,
        to: chain.to.takenAt,
        snapshots: [chain.from.backupId, chain.to.backupId],
      });
  }
  return proven;
}

/** The newest drill verdict the listing shows (one read). */
async function newestDrill(
  s3: S3Client,
  config: RestoreConfig,
  backups: ListedBackup[],
): Promise<DrillSummary | null> {
  const { bucket, cluster } = config.restore;
  const newest = backups.find((b) => b.drilled === true);
  if (newest === undefined) return null;
  const key = drillVerdictKey({
    prefix: prefixOf(config),
    cluster,
    host: newest.host,
    backupId: newest.backupId,
  });
  const response = await s3Call(`read s3://${bucket}/${key}`, () => getObjectOrNull(s3, bucket, key));
  if (response === null) return null;
  const v = parseDrillVerdict(JSON.parse((await response.Body?.transformToString()) ?? ""));
  return {
    backupId: v.to.backupId,
    fromBackupId: v.from.backupId,
    verifiedAt: v.verifiedAt,
    at: v.point.at,
    seed: v.point.seed,
    verdict: v.verdict,
    rtoSeconds: v.restore?.secondsToQueryable ?? null,
    expectedGtid: v.expected.gtid,
    failure: v.failure === null ? null : `${v.failure.kind}: ${v.failure.detail}`,
  };
}

/** The line `restore list` prints about the newest drill. */
export function describeDrillSummary(d: DrillSummary | null): string {
  if (d === null) return "  restore drill: none yet (one follows each proven chain)";
  return d.verdict === "passed"
    ? `  restore drill ${d.verifiedAt}: to ${d.at} from ${d.fromBackupId} passed, queryable after ${d.rtoSeconds}s (the measured PITR RTO) at ${d.expectedGtid}`
    : `  restore drill ${d.verifiedAt}: to ${d.at} from ${d.fromBackupId} FAILED (${d.failure})`;
}

function summarize(epoch: ArchivedEpoch): ArchivedChainSummary {
  const firsts = epoch.entries
    .map((e) => e.transactions.firstCommitAt)
    .filter((t): t is string => t !== null);
  const lasts = epoch.entries.map((e) => e.transactions.lastCommitAt).filter((t): t is string => t !== null);
  return {
    host: epoch.host,
    epoch: epoch.epoch,
    reason: epoch.record?.reason ?? null,
    segments: epoch.entries.length,
    bytes: epoch.entries.reduce((sum, e) => sum + e.bytes, 0),
    firstCommitAt: firsts.sort()[0] ?? null,
    lastCommitAt: lasts.sort().at(-1) ?? null,
    incomplete: epoch.incomplete.length,
    missing: epoch.record?.missing ?? null,
  };
}

/** The lines `restore list` prints under the backups. */
export function describePitr(summary: PitrSummary): string {
  if (summary.chains.length === 0) return "point-in-time recovery: no binlog archive for this cluster";
  const lines = ["", "POINT-IN-TIME RECOVERY (restore --until TIME | --until-gtid GTID)"];
  if (summary.windows.length === 0)
    lines.push("  no window: no verified snapshot is covered by the archive yet");
  for (const w of summary.windows)
    lines.push(
      `  any second from ${w.from} to ${w.to} (GTID ${w.toGtid}), from ${w.snapshots.length} snapshot(s)`,
    );
  lines.push(
    summary.proven.length === 0
      ? "  proven by the verifier: nothing yet (no chain between two verified snapshots replayed and compared)"
      : "  proven by the verifier (snapshot replayed to the next one, every table's checksum equal):",
  );
  for (const p of summary.proven) lines.push(`    from ${p.from} to ${p.to} (${p.snapshots.join(" → ")})`);
  lines.push(describeDrillSummary(summary.drill));
  lines.push(
    "",
    `${"ARCHIVE (HOST/EPOCH)".padEnd(42)} ${"SEGMENTS".padStart(8)} ${"MIB".padStart(9)}  FROM → TO`,
  );
  for (const c of summary.chains) {
    lines.push(
      `${`${c.host}/${c.epoch}`.padEnd(42)} ${String(c.segments).padStart(8)} ${(c.bytes / 1024 / 1024).toFixed(1).padStart(9)}  ` +
        `${c.firstCommitAt ?? "-"} → ${c.lastCommitAt ?? "-"}` +
        (c.reason !== null ? `  (${c.reason})` : "") +
        (c.incomplete > 0 ? `  ${c.incomplete} incomplete` : ""),
    );
    if (c.missing !== null) lines.push(`    GAP before this chain: lost ${c.missing}`);
  }
  return lines.join("\n");
}
