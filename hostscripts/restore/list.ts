import { ListObjectsV2Command, type S3Client } from "@aws-sdk/client-s3";
import {
  ARCHIVE_CHUNK_PATTERN,
  ARCHIVE_OBJECT,
  DEFAULT_PREFIX,
  DRILL_VERDICT_OBJECT,
  MANIFEST_OBJECT,
  VERIFICATION_OBJECT,
  clusterPrefix,
  manifestKey,
  type BackupRef,
  type RestoreSource,
  type Verdict,
  type VerifiedObjects,
} from "../../contracts";
import { PipelineError } from "../common/errors";
import { s3Call } from "../common/s3";
import { describeDrift, readReport } from "./verdicts";

/**
 * `restore list` and the choice of what to restore: a cluster's backups, newest first, each with the
 * verifier's verdict; `restore --target` takes the newest verified one unless one is named.
 */

/** One backup of the cluster as `restore list` shows it. */
export interface ListedBackup {
  backupId: string;
  host: string;
  manifestKey: string;
  /** False when the manifest is missing: the backup is incomplete and cannot be restored. */
  complete: boolean;
  /** The verifier's verdict, or null when no report exists yet. */
  verdict: Verdict | null;
  verifiedAt: string | null;
  /** What vanished or shrank since the previous verified backup (the report's drift findings), or null. */
  drift: string | null;
  /**
   * The exact objects (versions, ETags, sha256) the verdict covers, which `restore` fetches; null without a
   * verdict, or when the verdict predates the binding.
   */
  objects: VerifiedObjects | null;
  /** A `pitr-drill.json` lies beside it: the verifier drilled a restore to a point before it. */
  drilled?: boolean;
}

const chunkObject = new RegExp(ARCHIVE_CHUNK_PATTERN);

/** Every backup of the cluster (all hosts), newest first, with its verdict. */
export async function listBackups(s3: S3Client, source: RestoreSource): Promise<ListedBackup[]> {
  const root = source.prefix ?? DEFAULT_PREFIX;
  const prefix = clusterPrefix(root, source.cluster);
  const found = new Map<string, { host: string; backupId: string; objects: Set<string> }>();
  let token: string | undefined;
  do {
    const page = await s3Call(`list s3://${source.bucket}/${prefix}`, () =>
      s3.send(new ListObjectsV2Command({ Bucket: source.bucket, Prefix: prefix, ContinuationToken: token })),
    );
    for (const object of page.Contents ?? []) {
      const parts = (object.Key ?? "").slice(prefix.length).split("/");
      if (parts.length !== 3) continue;
      const [host, backupId, name] = parts;
      const entry = found.get(`${host}/${backupId}`) ?? { host, backupId, objects: new Set<string>() };
      entry.objects.add(name);
      found.set(`${host}/${backupId}`, entry);
    }
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token !== undefined);

  const backups: ListedBackup[] = [];
  for (const { host, backupId, objects } of found.values()) {
    const archived = objects.has(ARCHIVE_OBJECT) || [...objects].some((name) => chunkObject.test(name));
    if (!archived && !objects.has(MANIFEST_OBJECT)) continue;
    const ref: BackupRef = { prefix: root, cluster: source.cluster, host, backupId };
    const report = objects.has(VERIFICATION_OBJECT)
      ? await s3Call(`read the verification report of ${backupId}`, () => readReport(s3, source.bucket, ref))
      : null;
    backups.push({
      backupId,
      host,
      manifestKey: manifestKey(ref),
      complete: objects.has(MANIFEST_OBJECT),
      verdict: report?.verdict ?? null,
      verifiedAt: report?.verifiedAt ?? null,
      drift: report?.drift ? describeDrift(report.drift) : null,
      objects: report?.objects ?? null,
      drilled: objects.has(DRILL_VERDICT_OBJECT),
    });
  }
  return backups.sort((a, b) => b.backupId.localeCompare(a.backupId) || a.host.localeCompare(b.host));
}

/**
 * The backup to restore: the named one, else the newest verified one. A named backup must be complete and
 * must not have failed verification; one not verified yet is allowed (the caller warns).
 */
export function chooseBackup(
  backups: ListedBackup[],
  backupId: string | null,
  cluster: string,
): ListedBackup {
  const hint = "run `mysql-backup restore --config FILE list` to see the backups and their verdicts";
  if (backupId === null) {
    const verified = backups.find((b) => b.complete && b.verdict === "verified");
    if (verified === undefined) {
      throw new PipelineError(
        "Usage",
        `cluster ${cluster} has no verified backup (${backups.length} backups found)`,
        `${hint}; name one with --backup ID to restore it without a verdict`,
      );
    }
    return verified;
  }
  const named = backups.find((b) => b.backupId === backupId);
  if (named === undefined)
    throw new PipelineError("Usage", `no backup ${backupId} in cluster ${cluster}`, hint);
  if (!named.complete) {
    throw new PipelineError(
      "Usage",
      `backup ${backupId} has no manifest.json: it is incomplete and cannot be restored`,
      hint,
    );
  }
  if (named.verdict === "failed") {
    throw new PipelineError(
      "Usage",
      `backup ${backupId} failed verification (${named.verifiedAt}): it cannot be trusted`,
      `read its verification.json, then pick another backup; ${hint}`,
    );
  }
  return named;
}

/** The table `restore list` prints. */
export function summarizeList(cluster: string, backups: ListedBackup[]): string {
  if (backups.length === 0) return `cluster ${cluster} has no backups`;
  const rows = backups.map(
    (b) =>
      [
        b.backupId.padEnd(24),
        b.host.padEnd(16),
        (b.complete ? (b.verdict ?? "not verified") : "INCOMPLETE").padEnd(14),
        b.verifiedAt ?? "",
      ]
        .join(" ")
        .trimEnd() + (b.drift ? `\n${"".padEnd(25)}drift: ${b.drift}` : ""),
  );
  return [`${"BACKUP".padEnd(24)} ${"HOST".padEnd(16)} ${"VERDICT".padEnd(14)} VERIFIED AT`, ...rows].join(
    "\n",
  );
}
