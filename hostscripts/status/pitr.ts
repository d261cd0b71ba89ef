import {
  binlogArchivePrefix,
  manifestKey,
  parseManifest,
  parseVerificationReport,
  verificationKey,
  type HostStatus,
  type VerificationReport,
} from "../../contracts";
import { gtidOf, manifestStart, parseState } from "../common/gtid-state";
import type { Read, ScannedBackup } from "../common/listing";
import type { WindowSnapshot } from "../common/pitr-chain";
import { archiveHosts, scanArchive, type ArchiveScan } from "./archive";
import { judgeArchive, type ArchiveJudgement } from "./archive-health";
import { worst } from "./health";
import { chainFailure, drillFailure, readLastDrill, readProvenChain } from "./proven";
import type { HostScan, StatusReader } from "./scan";

/**
 * Point-in-time recovery in `status`: every shown host's binlog archive read (archive.ts), the verified
 * snapshots a window may start from, and the judgement (archive-health.ts) merged into the host's line.
 */

/** What the status config says about a cluster's archive. */
export interface PitrExpectation {
  expected: boolean;
  rpoSeconds: number;
}

/**
 * Snapshots a window may start from, read beyond the scan's: from the newest backup taken at or before the
 * archive's oldest commit (it may be the one the archive continues), this many, oldest first.
 */
const MAX_WINDOW_SNAPSHOTS = 6;

/** The hosts of a cluster with a binlog archive (one list request). */
export async function archivedHosts(reader: StatusReader, cluster: string): Promise<Set<string>> {
  return new Set(await archiveHosts(reader, cluster));
}

/** Reads and judges the archives of the scanned hosts; a host without one gets a judgement too (null line). */
export async function judgeArchives(
  reader: StatusReader,
  cluster: string,
  scans: HostScan[],
  archived: Set<string>,
  pitr: PitrExpectation,
  now: Date,
): Promise<Map<string, ArchiveJudgement>> {
  const archives = new Map<string, ArchiveScan>();
  for (const scan of scans) {
    if (archived.has(scan.host)) archives.set(scan.host, await scanArchive(reader, cluster, scan.host));
  }
  const starts = [...archives.values()].flatMap((a) =>
    a.epochs.flatMap((e) => {
      const first = e.first !== null && "value" in e.first ? e.first.value : null;
      return first === null ? [] : [first.transactions.firstCommitAt ?? first.events.firstAt];
    }),
  );
  const snapshots =
    starts.length === 0 ? [] : await windowSnapshots(reader, cluster, scans, starts.sort()[0]);
  const newestVerified = newestVerifiedOf(scans);
  const chain = archives.size === 0 ? null : await readProvenChain(reader, cluster, scans);
  const drill = archives.size === 0 ? null : await readLastDrill(reader, cluster, scans);
  const judged = new Map<string, ArchiveJudgement>();
  for (const scan of scans) {
    const url = `s3://${reader.bucket}/${binlogArchivePrefix(reader.prefix, cluster)}${scan.host}/`;
    const judgement = judgeArchive(
      archives.get(scan.host) ?? null,
      { ...pitr, snapshots, newestVerified, url },
      now,
    );
    if (chain !== null && judgement.status !== null) {
      // The proof is the cluster's (A and B may be on different replicas); its failure shows on B's host.
      judgement.status.provenWindow = chain.window;
      if (chain.host === scan.host) judgement.reasons.push(...chainFailure(chain));
    }
    if (drill !== null && judgement.status !== null) {
      const v = drill.verdict;
      judgement.status.lastDrill = {
        backupId: v.to.backupId,
        verifiedAt: v.verifiedAt,
        at: v.point.at,
        verdict: v.verdict,
        rtoSeconds: v.restore?.secondsToQueryable ?? null,
      };
      if (drill.host === scan.host) judgement.reasons.push(...drillFailure(drill));
    }
    judged.set(scan.host, judgement);
  }
  return judged;
}

/** The host's line with its archive: the archive's findings join the host's, worst first. */
export function withArchive(host: HostStatus, judgement: ArchiveJudgement | undefined): HostStatus {
  if (judgement === undefined || judgement.status === null) return host;
  const rank = { ok: 0, warning: 1, critical: 2 } as const;
  const problems = [...host.reasons, ...judgement.reasons].filter((r) => r.state !== "ok");
  const reasons =
    problems.length > 0
      ? problems.sort((a, b) => rank[b.state] - rank[a.state])
      : [
          {
            state: "ok" as const,
            message: [...host.reasons, ...judgement.reasons].map((r) => r.message).join("; "),
          },
        ];
  return { ...host, binlog: judgement.status, reasons, health: worst(reasons.map((r) => r.state)) };
}

function newestVerifiedOf(scans: HostScan[]): { backupId: string; takenAt: Date } | null {
  const verified = scans.flatMap((s) =>
    s.backups.filter((b) => {
      const read = s.verdicts.get(b.backupId);
      return read !== undefined && "value" in read && read.value.verdict === "verified";
    }),
  );
  const newest = verified.sort((a, b) => b.backupId.localeCompare(a.backupId))[0];
  return newest === undefined ? null : { backupId: newest.backupId, takenAt: newest.takenAt };
}

/** The verified snapshots, with the GTID state their data holds; see MAX_WINDOW_SNAPSHOTS. */
async function windowSnapshots(
  reader: StatusReader,
  cluster: string,
  scans: HostScan[],
  archiveStart: string,
): Promise<WindowSnapshot[]> {
  const judged = scans
    .flatMap((s) => s.backups.filter((b) => b.complete && b.hasVerdict).map((b) => ({ scan: s, backup: b })))
    .sort((a, b) => a.backup.backupId.localeCompare(b.backup.backupId));
  const before = judged.filter((j) => j.backup.takenAt.toISOString() <= archiveStart).length;
  const picked = judged.slice(Math.max(0, before - 1), Math.max(0, before - 1) + MAX_WINDOW_SNAPSHOTS);
  // The newest verified backup, which the scan read, is always a candidate.
  const newest = judged.filter(({ scan, backup }) => isVerified(scan.verdicts.get(backup.backupId))).at(-1);
  if (newest !== undefined && !picked.includes(newest)) picked.push(newest);
  const snapshots: WindowSnapshot[] = [];
  for (const { scan, backup } of picked) {
    const snapshot = await readSnapshot(reader, cluster, scan, backup);
    if (snapshot !== null) snapshots.push(snapshot);
  }
  return snapshots;
}

function isVerified(
  read: Read<VerificationReport> | null | undefined,
): read is { value: VerificationReport } {
  return read !== null && read !== undefined && "value" in read && read.value.verdict === "verified";
}

/** A verified backup's completion and GTID state (the recovered position for a lock-free one), or null. */
async function readSnapshot(
  reader: StatusReader,
  cluster: string,
  scan: HostScan,
  backup: ScannedBackup,
): Promise<WindowSnapshot | null> {
  const ref = { prefix: reader.prefix, cluster, host: scan.host, backupId: backup.backupId };
  const verdict =
    scan.verdicts.get(backup.backupId) ?? (await reader.read(verificationKey(ref), parseVerificationReport));
  if (!isVerified(verdict)) return null;
  const newestManifest = scan.newestManifest;
  const manifest =
    newestManifest !== null && "value" in newestManifest && newestManifest.value.backupId === backup.backupId
      ? newestManifest
      : await reader.read(manifestKey(ref), parseManifest);
  if (manifest === null || !("value" in manifest)) return null;
  const flavor = manifest.value.server.flavor;
  const recovered = verdict.value.position.recovered;
  const recoveredText = recovered ? gtidOf(flavor, recovered) : null;
  const start =
    manifest.value.positionAfter && recoveredText !== null
      ? parseState(flavor, recoveredText)
      : manifestStart(manifest.value);
  if (start === null) return null;
  return { backupId: backup.backupId, completedAt: manifest.value.completedAt, flavor, start };
}
