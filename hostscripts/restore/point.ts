import type { S3Client } from "@aws-sdk/client-s3";
import { DEFAULT_PREFIX, type BackupManifest, type RestoreConfig, type ServerFlavor } from "../../contracts";
import { PipelineError } from "../common/errors";
import { gtidOf, lastPerDomain, manifestStart, parseState, type GtidState } from "../common/gtid-state";
import type { Logger } from "../common/log";
import { s3Failure } from "../common/s3";
import type { PitrTarget } from "../common/pitr-chain";
import { chooseBackup, type ListedBackup } from "./list";
import { ObjectProblem, readManifest } from "./objects";
import { readReport } from "./verdicts";

/**
 * The snapshot a point-in-time restore starts from: the newest verified backup before the point (completed at
 * or before the time, or whose position the target GTID covers), or the one named, with the GTID state its
 * data holds: the position captured under the lock.
 */

/** The snapshot chosen, and the GTID state the replay starts from. */
export interface StartingSnapshot {
  backup: ListedBackup;
  manifest: BackupManifest;
  flavor: ServerFlavor;
  /**
   * The GTID state the restored server must recover to: the position captured under the lock, or for a
   * lock-free backup the one its verifier saw it recover to (else the position read before the snapshot, a
   * lower bound the recovered state is checked against).
   */
  start: GtidState;
  /** False when `start` is only the lower bound (a lock-free backup no verdict names the position of). */
  startExact: boolean;
  /**
   * A lock-free backup (manifest `positionAfter`): the positions read before and after the snapshot, which
   * the recovered state must lie between; null when the position was frozen by the lock.
   */
  bounds: { before: string; after: string } | null;
}

/** A lock-free backup's exact position: the one its verdict says the restored server recovered to. */
async function recoveredStart(
  s3: S3Client,
  config: RestoreConfig,
  backup: ListedBackup,
  manifest: BackupManifest,
): Promise<GtidState | null> {
  const ref = {
    prefix: prefixOf(config),
    cluster: config.restore.cluster,
    host: backup.host,
    backupId: backup.backupId,
  };
  const report = await readReport(s3, config.restore.bucket, ref).catch(() => null);
  const recovered = report?.position.recovered;
  if (!recovered) return null;
  const flavor = manifest.server.flavor;
  const text = flavor === "mariadb" ? recovered.gtidBinlogPos : recovered.gtidExecuted;
  return text === null ? null : parseState(flavor, text);
}

/** Whether a snapshot at `start` lies at or before the GTID target (it has nothing the target lacks per domain). */
function beforeGtid(start: GtidState, target: GtidState): boolean {
  if (start.flavor === "mysql") return target.covers(start);
  return lastPerDomain(target).every((g) => g.flavor !== "mariadb" || !start.has({ ...g, seq: g.seq + 1 }));
}

/** Picks the snapshot; see the module comment. */
export async function chooseStartingSnapshot(
  s3: S3Client,
  config: RestoreConfig,
  backups: ListedBackup[],
  target: PitrTarget,
  named: string | null,
  log: Logger,
): Promise<StartingSnapshot> {
  const { bucket, cluster } = config.restore;
  const candidates =
    named !== null
      ? [chooseBackup(backups, named, cluster)]
      : backups.filter((b) => b.complete && b.verdict === "verified");
  const skipped: string[] = [];
  for (const backup of candidates) {
    const manifest = await readManifest(s3, bucket, backup.manifestKey, verifiedManifest(backup)).then(
      (read) => read.manifest,
      (error: unknown) => {
        if (error instanceof ObjectProblem && error.kind === "invalid") return null;
        throw s3Failure(`read ${backup.manifestKey}`, error);
      },
    );
    if (manifest === null) {
      skipped.push(`${backup.backupId} (invalid manifest)`);
      continue;
    }
    const captured = manifestStart(manifest);
    const recovered = manifest.positionAfter ? await recoveredStart(s3, config, backup, manifest) : null;
    const start = recovered ?? captured;
    if (start === null || captured === null) {
      skipped.push(`${backup.backupId} (no GTID position: binary logging was off)`);
      continue;
    }
    const fits =
      target.kind === "latest" ||
      (target.kind === "time" && Date.parse(manifest.completedAt) <= target.at.getTime()) ||
      (target.kind === "gtid" && beforeGtid(start, target.gtid));
    const after = manifest.positionAfter ? gtidOf(manifest.server.flavor, manifest.positionAfter) : null;
    const bounds = after === null ? null : { before: captured.toString(), after };
    const startExact = !manifest.positionAfter || recovered !== null;
    if (fits) return { backup, manifest, flavor: manifest.server.flavor, start, startExact, bounds };
    skipped.push(`${backup.backupId} (after the point)`);
    if (named !== null)
      throw new PipelineError(
        "Usage",
        `backup ${named} was taken after the point`,
        "name an earlier backup, or none",
      );
  }
  log.warn("no snapshot before the point", { skipped });
  throw new PipelineError(
    "Usage",
    `cluster ${cluster} has no verified backup before the point${skipped.length ? ` (considered: ${skipped.join(", ")})` : ""}`,
    "run `mysql-backup restore --config FILE list` to see the backups and the restorable window",
  );
}

/** The manifest version the verdict proved (restore reads exactly that one), or none (the current one). */
export function verifiedManifest(backup: ListedBackup) {
  return backup.verdict === "verified" ? (backup.objects?.manifest ?? undefined) : undefined;
}

/** The prefix of the cluster's objects. */
export function prefixOf(config: RestoreConfig): string {
  return config.restore.prefix ?? DEFAULT_PREFIX;
}

/**
 * Reads `--until` (`latest`, or a time: ISO 8601, or `YYYY-MM-DD HH:MM:SS[.ffffff]` read as UTC unless it
 * names an offset) or `--until-gtid` (a MariaDB GTID position, or a MySQL GTID / GTID set).
 */
export function parseUntil(until: string | null, untilGtid: string | null): PitrTarget | null {
  if (until !== null && untilGtid !== null)
    throw new PipelineError("Usage", "give --until or --until-gtid, not both", "pick one point");
  if (untilGtid !== null) {
    const flavor: ServerFlavor = /^[0-9a-f]{8}-/i.test(untilGtid.trim()) ? "mysql" : "mariadb";
    try {
      return { kind: "gtid", gtid: parseState(flavor, untilGtid) };
    } catch (error) {
      throw new PipelineError(
        "Usage",
        `--until-gtid ${untilGtid}: ${(error as Error).message}`,
        "e.g. --until-gtid 0-1-1234",
      );
    }
  }
  if (until === null) return null;
  if (until === "latest") return { kind: "latest" };
  const m = /^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)(Z|[+-]\d{2}:?\d{2})?$/.exec(
    until.trim(),
  );
  const at = m === null ? NaN : Date.parse(`${m[1]}T${m[2]}${m[3] ?? "Z"}`);
  if (Number.isNaN(at))
    throw new PipelineError(
      "Usage",
      `--until "${until}" is not a time`,
      'give an ISO 8601 time such as 2026-11-30T16:30:05Z, "2026-11-30 16:30:05" (UTC), or latest',
    );
  return { kind: "time", at: new Date(at) };
}
