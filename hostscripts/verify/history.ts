import { ListObjectsV2Command, type S3Client } from "@aws-sdk/client-s3";
import {
  VERIFICATION_OBJECT,
  VERIFY_DEFAULTS,
  clusterPrefix,
  type BackupRef,
  type DriftFinding,
  type DriftReport,
  type ManifestTable,
  type RestoredTable,
  type VerificationReport,
} from "../../contracts";
import { messageOf } from "../common/errors";
import { readReport } from "../restore/verdicts";

/**
 * The cluster's history as the verifier sees it: the previous verified backup of the same cluster (any of
 * its hosts), and what changed since, so a table that vanished or lost most of its rows is flagged even
 * though the backup faithfully holds what the server held (DESIGN §4 point 5).
 */

/** How drift is judged. */
export interface DriftOptions {
  /** Share of its rows a table may lose before it is flagged. */
  maxShrinkShare: number;
  /** Tables smaller than this in the previous backup are never flagged for shrinking. */
  minRows: number;
}

/** The defaults of `VerifyConfig.drift`, as the options drift is judged with. */
export const DEFAULT_DRIFT: DriftOptions = VERIFY_DEFAULTS.drift;

/** What vanished or shrank since `previous` (tables and row counts of the two verifications). */
export function findDrift(
  previous: RestoredTable[],
  current: Array<ManifestTable & { rows: number | null }>,
  options: DriftOptions,
): DriftFinding[] {
  const now = new Map(current.map((t) => [`${t.schema}.${t.table}`, t]));
  const findings: DriftFinding[] = [];
  for (const before of previous) {
    const after = now.get(`${before.schema}.${before.table}`);
    if (after === undefined) {
      findings.push({
        schema: before.schema,
        table: before.table,
        kind: "vanished",
        previousRows: before.rows,
        rows: null,
      });
      continue;
    }
    if (before.rows === null || after.rows === null || before.rows < options.minRows) continue;
    if (after.rows < before.rows * (1 - options.maxShrinkShare)) {
      findings.push({
        schema: before.schema,
        table: before.table,
        kind: "shrank",
        previousRows: before.rows,
        rows: after.rows,
      });
    }
  }
  return findings;
}

/**
 * The newest verified report of the cluster older than `ref`'s backup, or null. Backup ids sort by time, so
 * the reports are read newest first and the first verified one ends the search.
 */
export async function previousVerifiedReport(
  s3: S3Client,
  bucket: string,
  ref: BackupRef,
): Promise<VerificationReport | null> {
  const prefix = clusterPrefix(ref.prefix, ref.cluster);
  const candidates: BackupRef[] = [];
  let token: string | undefined;
  do {
    const page = await s3.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
    );
    for (const object of page.Contents ?? []) {
      const [host, backupId, name] = (object.Key ?? "").slice(prefix.length).split("/");
      if (name === VERIFICATION_OBJECT && backupId < ref.backupId)
        candidates.push({ ...ref, host, backupId });
    }
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token !== undefined);
  candidates.sort((a, b) => b.backupId.localeCompare(a.backupId));
  for (const candidate of candidates) {
    const report = await readReport(s3, bucket, candidate);
    if (report?.verdict === "verified") return report;
  }
  return null;
}

/**
 * The drift section of a report. A history that cannot be read (no s3:ListBucket, S3 trouble) is noted,
 * never fatal: it says nothing about this backup.
 */
export async function judgeDrift(
  s3: S3Client,
  bucket: string,
  ref: BackupRef,
  tables: RestoredTable[],
  options: DriftOptions,
): Promise<DriftReport> {
  let previous: VerificationReport | null;
  try {
    previous = await previousVerifiedReport(s3, bucket, ref);
  } catch (error) {
    return {
      previousBackupId: null,
      maxShrinkShare: options.maxShrinkShare,
      findings: [],
      note: `the previous verified backup could not be read: ${messageOf(error)} (the verifier needs s3:ListBucket on the cluster's prefix)`,
    };
  }
  if (previous === null) {
    return {
      previousBackupId: null,
      maxShrinkShare: options.maxShrinkShare,
      findings: [],
      note: "no earlier verified backup of this cluster",
    };
  }
  return {
    previousBackupId: previous.backupId,
    maxShrinkShare: options.maxShrinkShare,
    findings: findDrift(previous.tables, tables, options),
    note: null,
  };
}
