import type { S3Client } from "@aws-sdk/client-s3";
import {
  parseVerificationReport,
  verificationKey,
  type BackupRef,
  type DriftReport,
  type VerificationReport,
} from "../../contracts";
import { getObjectOrNull } from "../common/s3";

/** Reading the verifier's verdicts (`verification.json`): `restore` trusts a backup by them, the verifier never judges twice. */

/**
 * The verdict already written for a backup, or null when there is none. At-least-once delivery means a
 * message can arrive twice: the verdict stands once written. A `verification.json` that is not a valid
 * report throws (it is not overwritten blindly: someone must look at it).
 */
export async function readReport(
  s3: S3Client,
  bucket: string,
  ref: BackupRef,
): Promise<VerificationReport | null> {
  const key = verificationKey(ref);
  const response = await getObjectOrNull(s3, bucket, key);
  if (response === null) return null;
  const text = (await response.Body?.transformToString()) ?? "";
  try {
    return parseVerificationReport(JSON.parse(text));
  } catch (error) {
    throw new Error(
      `s3://${bucket}/${key} exists but is not a valid verification report (${(error as Error).message}); ` +
        "delete it (or restore its previous version) to have the backup verified again",
      { cause: error },
    );
  }
}

/** One line per finding, for the log and the summary. */
export function describeDrift(drift: DriftReport): string | null {
  if (drift.findings.length === 0) return null;
  return drift.findings
    .map((f) =>
      f.kind === "vanished"
        ? `${f.schema}.${f.table} vanished (had ${f.previousRows ?? "?"} rows in ${drift.previousBackupId})`
        : `${f.schema}.${f.table} shrank from ${f.previousRows} to ${f.rows} rows since ${drift.previousBackupId}`,
    )
    .join("; ");
}
