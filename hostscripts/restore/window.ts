import type { S3Client } from "@aws-sdk/client-s3";
import type { RestoreConfig } from "../../contracts";
import { listArchive, readArchive, type ArchivedEpoch } from "./archive";
import { planChain } from "./chain";
import type { ListedBackup } from "./list";
import { ObjectProblem, readManifest } from "./objects";
import { manifestStart, prefixOf, verifiedManifest } from "./point";

/**
 * The restorable window for `restore list`: from each verified snapshot, how far the archived chain reaches
 * without a gap; overlapping spans merge into windows ("any second from … to …"). Also what the archive holds
 * per chain, and every gap an epoch record names.
 */

/** A span of time any second of which `restore --until` can reach. */
export interface PitrWindow {
  from: string;
  to: string;
  /** The GTID state at `to`. */
  toGtid: string;
  /** The verified snapshots a restore into this window starts from. */
  snapshots: string[];
}

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

/** What `restore list` shows about point-in-time recovery. */
export interface PitrSummary {
  windows: PitrWindow[];
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
  const spans: PitrWindow[] = [];
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
    const plan = planChain(manifest.server.flavor, epochs, start, { kind: "latest" });
    spans.push({
      from: manifest.completedAt,
      to: plan.reachAt !== null && plan.reachAt > manifest.completedAt ? plan.reachAt : manifest.completedAt,
      toGtid: plan.reach,
      snapshots: [backup.backupId],
    });
  }
  return { windows: merge(spans), chains: epochs.map(summarize) };
}

function merge(spans: PitrWindow[]): PitrWindow[] {
  const sorted = [...spans].sort((a, b) => a.from.localeCompare(b.from));
  const merged: PitrWindow[] = [];
  for (const span of sorted) {
    const last = merged.at(-1);
    if (last !== undefined && span.from <= last.to) {
      if (span.to > last.to) Object.assign(last, { to: span.to, toGtid: span.toGtid });
      last.snapshots.push(...span.snapshots);
    } else merged.push({ ...span, snapshots: [...span.snapshots] });
  }
  return merged;
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
