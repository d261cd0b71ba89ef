import {
  GetObjectTaggingCommand,
  PutObjectTaggingCommand,
  type S3Client,
  type Tag,
} from "@aws-sdk/client-s3";
import {
  CHECKS,
  RETENTION_TAG,
  VERDICT_TAG,
  VerifierMetric,
  lockModeOf,
  archiveKey,
  boundArchiveObjects,
  manifestKey,
  metric,
  parseVerificationReport,
  verificationKey,
  type BackupManifest,
  type BackupRef,
  type CheckResult,
  type DriftReport,
  type MetricDatum,
  type RecoveryPoint,
  type RestoredTable,
  type Verdict,
  type VerificationReport,
  type VerifiedObjects,
} from "../../contracts";
import { createJsonOnce } from "../common/s3";
import type { RestoredPosition } from "./checks";

/**
 * `verification.json` (DESIGN §1 step 14): built from what the checks found, validated against its schema
 * before it leaves the host, written next to the backup it judges, and turned into the verifier's metrics.
 */

/** Seconds spent in each phase of a restore. */
export type RestoreTimings = VerificationReport["timings"];

/** What a verification found, as the report is built from it. */
export interface ReportInput {
  bucket: string;
  manifestKey: string;
  ref: BackupRef;
  /** Null when the manifest is missing or unreadable: the report then fails on "objects". */
  manifest: BackupManifest | null;
  /** The objects exactly as they were read: the verdict covers these and nothing else. */
  objects: VerifiedObjects;
  /** The checks that ran, in order; a verdict is "verified" only when all of CHECKS ran and passed. */
  checks: CheckResult[];
  restored: RestoredPosition | null;
  tables: RestoredTable[];
  timings: RestoreTimings;
  verifierHost: string;
  serverVersion: string | null;
  /** When the backup was taken (the manifest's start, else the backup id's time). */
  takenAt: Date;
  now: Date;
  /** Set when this verifier cannot run the backup's server: the verdict is then "unsupported". */
  unsupportedReason?: string;
  /** The comparison with the previous verified backup, when the backup was verified. */
  drift?: DriftReport;
  /** From the heartbeat table, when the restore got that far. */
  recoveryPoint?: RecoveryPoint | null;
}

/** The GTID value a report shows for a flavor: the binlog position on MariaDB, gtid_executed on MySQL. */
function reportedGtid(
  flavor: BackupManifest["server"]["flavor"],
  p: { gtidBinlogPos: string | null; gtidExecuted: string | null },
) {
  return flavor === "mariadb" ? p.gtidBinlogPos : p.gtidExecuted;
}

/** Builds the report and validates it; a report that breaks its own schema is a bug, so this throws. */
export function buildReport(input: ReportInput): VerificationReport {
  const failed = input.checks.find((c) => !c.passed);
  const complete = CHECKS.every((name) => input.checks.some((c) => c.name === name && c.passed));
  const flavor = input.manifest?.server.flavor ?? "mariadb";
  const round = (seconds: number) => Math.round(seconds * 1000) / 1000;
  const unsupported = input.unsupportedReason !== undefined;
  return parseVerificationReport({
    formatVersion: 1,
    bucket: input.bucket,
    manifestKey: input.manifestKey,
    backupId: input.ref.backupId,
    cluster: input.ref.cluster,
    host: input.ref.host,
    verdict: unsupported ? "unsupported" : failed === undefined && complete ? "verified" : "failed",
    failedCheck: unsupported
      ? null
      : (failed?.name ??
        (complete ? null : (CHECKS.find((n) => !input.checks.some((c) => c.name === n)) ?? null))),
    checks: input.checks,
    verifiedAt: input.now.toISOString(),
    verifier: { host: input.verifierHost, serverVersion: input.serverVersion },
    position: {
      captured: {
        gtid: input.manifest ? reportedGtid(flavor, input.manifest.position) : null,
        binlog: input.manifest?.position.binlog ?? null,
      },
      restored: input.restored ? { gtid: reportedGtid(flavor, input.restored), binlog: null } : null,
      ...(input.manifest ? { lockMode: lockModeOf(input.manifest) } : {}),
      recovered: input.restored,
      ...(input.manifest?.positionAfter
        ? {
            bounds: {
              before: reportedGtid(flavor, input.manifest.position),
              after: reportedGtid(flavor, input.manifest.positionAfter),
            },
          }
        : {}),
    },
    tables: input.tables,
    timings: {
      downloadExtractSeconds: round(input.timings.downloadExtractSeconds),
      recoverySeconds: round(input.timings.recoverySeconds),
      checksSeconds: round(input.timings.checksSeconds),
      restoreSeconds: round(input.timings.restoreSeconds),
      ...(input.timings.checksumSeconds === undefined
        ? {}
        : { checksumSeconds: round(input.timings.checksumSeconds) }),
    },
    backupAgeSeconds: round((input.now.getTime() - input.takenAt.getTime()) / 1000),
    objects: input.objects,
    ...(unsupported ? { unsupportedReason: input.unsupportedReason } : {}),
    ...(input.drift !== undefined ? { drift: input.drift } : {}),
    ...(input.recoveryPoint !== undefined ? { recoveryPoint: input.recoveryPoint } : {}),
  });
}

/**
 * Writes the report next to the backup with SSE-KMS (the bucket policy refuses anything else), only when
 * none is there yet (a conditional write; common/s3's `isAlreadyWritten` recognises the refusal); returns its key.
 */
export async function writeReport(
  s3: S3Client,
  report: VerificationReport,
  ref: BackupRef,
  kmsKeyId: string | undefined,
): Promise<string> {
  const key = verificationKey(ref);
  await createJsonOnce(s3, report.bucket, key, report, kmsKeyId);
  return key;
}

/**
 * The verifier's data points for one report (dimension Cluster, as the alarms watch them); the recovery
 * point lag only when the backup holds a heartbeat table.
 */
export function reportMetrics(report: VerificationReport, now: Date): MetricDatum[] {
  const dimensions = { Cluster: report.cluster };
  const verified = report.verdict === "verified";
  return [
    metric(
      verified ? VerifierMetric.VerificationSucceeded : VerifierMetric.VerificationFailed,
      1,
      dimensions,
      now,
    ),
    metric(VerifierMetric.RestoreSeconds, report.timings.restoreSeconds, dimensions, now),
    metric(
      VerifierMetric.BackupAgeAtVerificationSeconds,
      Math.max(0, report.backupAgeSeconds),
      dimensions,
      now,
    ),
    ...(report.recoveryPoint
      ? [metric(VerifierMetric.RecoveryPointLagSeconds, report.recoveryPoint.lagSeconds, dimensions, now)]
      : []),
  ];
}

/**
 * The tag set of an object after a verdict: `verified=true|false`, and the object's `retention` tag restated
 * as it is. Tagging replaces the whole set, and the bucket policy refuses a set that drops or changes the
 * retention tag. No other key is kept: the verifier's role may write only these two.
 */
export function verdictTags(verdict: Verdict, existing: Tag[] = []): Tag[] {
  const retention = existing.find((tag) => tag.Key === RETENTION_TAG);
  return [
    { Key: VERDICT_TAG, Value: verdict === "verified" ? "true" : "false" },
    ...(retention ? [{ Key: RETENTION_TAG, Value: retention.Value }] : []),
  ];
}

/**
 * Tags the backup's objects with its verdict, each keeping its retention tag (verdictTags): every archive
 * object the report binds (the chunks of a format 2 backup) and the manifest; the layout's archive key when
 * the report binds none.
 */
export async function tagBackup(s3: S3Client, report: VerificationReport, ref: BackupRef): Promise<void> {
  const bound = report.objects ? boundArchiveObjects(report.objects).flatMap((o) => (o ? [o.key] : [])) : [];
  const keys = [...(bound.length > 0 ? bound : [archiveKey(ref)]), manifestKey(ref)];
  for (const key of keys) {
    const { TagSet } = await s3.send(new GetObjectTaggingCommand({ Bucket: report.bucket, Key: key }));
    await s3.send(
      new PutObjectTaggingCommand({
        Bucket: report.bucket,
        Key: key,
        Tagging: { TagSet: verdictTags(report.verdict, TagSet) },
      }),
    );
  }
}
