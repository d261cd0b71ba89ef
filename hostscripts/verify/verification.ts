import {
  CHECKS,
  VerifierMetric,
  backupIdTime,
  boundArchiveObjects,
  metric,
  verificationKey,
  type BackupCreatedMessage,
  type BackupManifest,
  type BackupRef,
  type CheckResult,
  type MetricDatum,
  type VerifiedObject,
  type VerificationReport,
  type VerifyConfig,
} from "../../contracts";
import { PipelineError, messageOf } from "../common/errors";
import type { Logger } from "../common/log";
import type { MetricsSink } from "../common/metrics";
import { isAlreadyWritten, s3Call, s3Failure } from "../common/s3";
import { currentObject, describeObject, differencesFrom } from "../restore/objects";
import { describeDrift, readReport } from "../restore/verdicts";
import { DEFAULT_DRIFT, judgeDrift } from "./history";
import { VERIFIER_S3_HINT } from "./objects";
import { buildReport, reportMetrics, tagBackup, writeReport } from "./report";
import { keepVerified, keepsVerified } from "./kept";
import { verifyBackup, type Findings, type RestoreAndCheckDeps } from "./restore-and-check";
import { emptyResult, resultOfReport, type VerificationResult } from "./result";

/**
 * One verification (DESIGN §1 steps 11–14): unless the backup already has a verdict, restore and check it
 * (restore-and-check.ts), then write `verification.json` once (a conditional write: two verifiers given the
 * same message cannot yield two verdicts), bound to the exact objects it read, tag the objects and emit the
 * metrics.
 *
 * Blame decides what happens to the message: a failed check is a verdict on the backup and is reported; a
 * PipelineError is the verifier's own trouble (S3, the scratch disk, the server binary), says nothing about
 * the backup and leaves the message to be retried.
 *
 * A stored verdict is returned without a second restore (at-least-once delivery), once its binding holds:
 * the objects in S3 must still be the ones it proved. When they are not, the verdict still stands for what
 * it proved (restore fetches exactly those versions) but the backup's current objects are unproven: a
 * replica can only create objects, so this is tamper evidence, and the outcome is a definitive "failed" on
 * "objects" with VerificationFailed emitted, which pages. A redelivered message (received before and not
 * deleted) whose verdict is stored emits the verdict's metrics again: whatever handled it first stopped
 * before deleting it, maybe before the metrics reached CloudWatch.
 */

/** How the message at hand was delivered. */
export interface Delivery {
  /** It was received before and not deleted: the verdict's metrics may never have been emitted. */
  redelivered: boolean;
}

/** What one verification runs on; tests pass real clients against the emulator and a memory logger. */
export interface VerificationDeps extends RestoreAndCheckDeps {
  metrics: MetricsSink;
  log: Logger;
  now: () => Date;
  /** This verifier's name in reports. */
  hostname: string;
  /**
   * Draws the PITR drill's seed for its window (A's completion to B's snapshot, drill.ts); tests inject one to
   * choose the point. Defaults to a random one.
   */
  drillSeed?: (window: { from: string; to: string }) => number;
}

/** Verifies, writes the report and the metrics; returns the result. Throws PipelineError for infrastructure. */
export async function verifyAndReport(
  config: VerifyConfig,
  message: BackupCreatedMessage,
  ref: BackupRef,
  deps: VerificationDeps,
  delivery: Delivery = { redelivered: false },
): Promise<VerificationResult> {
  const stored = await storedVerdict(message, ref, deps, delivery);
  if (stored !== null) return stored;
  const keep = keepsVerified(config)
    ? (root: string, manifest: BackupManifest) =>
        keepVerified(config, message.bucket, ref, manifest, root, deps)
    : undefined;
  const found = await verifyBackup(config, message, ref, { ...deps, keep });
  // Whatever a restore found after SIGTERM (a killed server, a cut download) says nothing about the backup.
  if (deps.signal?.aborted) throw new Interrupted(`verification of ${ref.backupId} was interrupted`);
  const now = deps.now();
  const report = await reportOn(config, message, ref, found, deps, now);
  // A duplicate delivered to another verifier may have finished first: its verdict stands (and it emits).
  const raced = await storedVerdict(message, ref, deps, { redelivered: false });
  if (raced !== null) return raced;
  let reportKey: string;
  try {
    reportKey = await writeReport(deps.s3, report, ref, config.s3?.kmsKeyId);
  } catch (error) {
    if (!isAlreadyWritten(error))
      throw s3Failure(`write verification.json for ${ref.backupId}`, error, VERIFIER_S3_HINT);
    const stored = await storedVerdict(message, ref, deps, { redelivered: false });
    if (stored === null)
      throw s3Failure(
        `write verification.json for ${ref.backupId} (S3 says one exists)`,
        error,
        VERIFIER_S3_HINT,
      );
    return stored;
  }
  await publishVerdict(config, ref, report, reportKey, now, deps);
  return {
    ...resultOfReport(report, reportKey),
    position: { captured: found.manifest?.position ?? null, restored: found.restored },
  };
}

/**
 * The verdict already written for this backup, as a result, once its binding is checked (see the module
 * comment); null when there is none yet.
 */
async function storedVerdict(
  message: BackupCreatedMessage,
  ref: BackupRef,
  deps: VerificationDeps,
  delivery: Delivery,
): Promise<VerificationResult | null> {
  const reportKey = verificationKey(ref);
  const report = await s3Call(
    `read s3://${message.bucket}/${reportKey}`,
    () => readReport(deps.s3, message.bucket, ref),
    VERIFIER_S3_HINT,
  );
  if (report === null) return null;
  const changes = await changesSince(report, deps);
  if (changes !== null && changes.length > 0) return objectsChanged(report, reportKey, changes, deps);
  deps.log.info(
    `backup ${ref.backupId} already has the verdict "${report.verdict}" (${report.verifiedAt} by ${report.verifier.host}); not restoring it again`,
    { reportKey, bound: changes !== null },
  );
  if (changes === null) {
    deps.log.warn(`the verdict on ${ref.backupId} predates object binding: it names no object version`, {
      reportKey,
      hint: "nothing proves the objects in S3 are the ones it judged; restore logs the same warning",
    });
  }
  if (delivery.redelivered) {
    await emitMetrics(reportMetrics(report, deps.now()), deps);
    deps.log.info(`emitted the metrics of ${ref.backupId}'s stored verdict again`, {
      why: "this message was received before and not deleted: its metrics may never have been emitted",
    });
  }
  return { ...resultOfReport(report, reportKey), alreadyReported: true };
}

/**
 * How the backup's objects in S3 differ from those the report is bound to, one line per object; null when
 * the report binds none (it predates the binding). Objects the verdict did not read are not compared.
 */
async function changesSince(report: VerificationReport, deps: VerificationDeps): Promise<string[] | null> {
  const { objects } = report;
  if (objects === undefined) return null;
  const changes: string[] = [];
  const named: Array<[string, VerifiedObject | null]> = [
    ["manifest", objects.manifest],
    ...boundArchiveObjects(objects).map((object, index): [string, VerifiedObject | null] => [
      objects.chunks ? `archive chunk ${index + 1}` : "archive",
      object,
    ]),
  ];
  for (const [name, bound] of named) {
    if (bound === null) continue;
    const where = `s3://${report.bucket}/${bound.key}`;
    const current = await s3Call(
      `read the metadata of ${where}`,
      () => currentObject(deps.s3, report.bucket, bound.key),
      VERIFIER_S3_HINT,
    );
    const differences = current === null ? ["it is gone"] : differencesFrom(bound, current);
    if (differences.length > 0)
      changes.push(
        `${name} ${where}: ${differences.join("; ")} (the verdict covers ${describeObject(bound)})`,
      );
  }
  return changes;
}

/** The objects in S3 are not the ones the stored verdict proved: a definitive "failed" on "objects", paged. */
async function objectsChanged(
  report: VerificationReport,
  reportKey: string,
  changes: string[],
  deps: VerificationDeps,
): Promise<VerificationResult> {
  const detail = `the objects changed after the verdict "${report.verdict}" of ${report.verifiedAt}: ${changes.join("; ")}`;
  const hint =
    "the verdict stands for the versions it names and restore fetches exactly those (where the bucket versions objects); " +
    "someone wrote over a verified backup, which replicas cannot: find who in CloudTrail";
  const now = deps.now();
  await emitMetrics([metric(VerifierMetric.VerificationFailed, 1, { Cluster: report.cluster }, now)], deps);
  deps.log.error(`backup ${report.backupId}: ${detail}`, { reportKey, hint });
  return {
    ...emptyResult("failed"),
    verdict: "failed",
    failedCheck: "objects",
    backupId: report.backupId,
    manifestKey: report.manifestKey,
    reportKey,
    checks: [{ name: "objects", passed: false, detail }],
    error: { message: detail, hint },
    report,
    alreadyReported: true,
  };
}

/** The report on what the restore found, with the drift from the previous verified backup when verified. */
async function reportOn(
  config: VerifyConfig,
  message: BackupCreatedMessage,
  ref: BackupRef,
  found: Findings,
  deps: VerificationDeps,
  now: Date,
): Promise<VerificationReport> {
  return buildReport({
    bucket: message.bucket,
    manifestKey: message.manifestKey,
    ref,
    manifest: found.manifest,
    objects: found.objects,
    checks: found.checks,
    restored: found.restored,
    tables: found.tables,
    timings: found.timings,
    verifierHost: deps.hostname,
    serverVersion: found.serverVersion,
    takenAt: found.manifest ? new Date(found.manifest.startedAt) : backupIdTime(ref.backupId),
    now,
    unsupportedReason: found.unsupportedReason ?? undefined,
    drift:
      allPassed(found.checks) && found.checks.every((c) => c.passed)
        ? await judgeDrift(deps.s3, message.bucket, ref, found.tables, { ...DEFAULT_DRIFT, ...config.drift })
        : undefined,
    recoveryPoint: found.manifest && found.unsupportedReason === null ? found.recoveryPoint : undefined,
  });
}

/** After the report is written: the verdict's tags on the objects, the metrics, and the log lines. */
async function publishVerdict(
  config: VerifyConfig,
  ref: BackupRef,
  report: VerificationReport,
  reportKey: string,
  now: Date,
  deps: VerificationDeps,
): Promise<void> {
  if (config.s3?.tagObjects) {
    // The report is the verdict; a missing tag only makes it less visible, so it never blocks the message.
    await tagBackup(deps.s3, report, ref).catch((error: unknown) =>
      deps.log.warn(
        `could not tag the objects of ${ref.backupId} verified=${report.verdict === "verified"}: ${messageOf(error)}`,
        {
          hint: "check s3:GetObjectTagging and s3:PutObjectTagging for the verifier's role; verification.json holds the verdict",
        },
      ),
    );
  }
  await emitMetrics(reportMetrics(report, now), deps);
  const drift = report.drift ? describeDrift(report.drift) : null;
  if (drift !== null) {
    deps.log.warn(
      `backup ${ref.backupId}: data changed suspiciously since the previous verified backup: ${drift}`,
      {
        hint: "the backup holds what the server held; check whether the change in production was intended",
        drift: report.drift,
      },
    );
  }
  const log = report.verdict === "verified" ? deps.log.info : deps.log.error;
  log(
    `backup ${ref.backupId} ${report.verdict}${report.failedCheck ? ` (check "${report.failedCheck}")` : ""}`,
    {
      reportKey,
      failedCheck: report.failedCheck,
      detail: report.unsupportedReason ?? report.checks.find((c) => !c.passed)?.detail,
      timings: report.timings,
    },
  );
}

/**
 * Emits a verdict's metrics; a failure is the verifier's infrastructure: the message stays, and its
 * redelivery finds the stored verdict and emits them again.
 */
async function emitMetrics(data: MetricDatum[], deps: Pick<VerificationDeps, "metrics">): Promise<void> {
  await deps.metrics.put(data).catch((error: unknown) => {
    throw new PipelineError(
      "VerifierInfrastructure",
      `cannot emit the verification metrics: ${messageOf(error)}`,
      "check the metrics sink (CloudWatch permissions or the metrics file); the verdict is written and its metrics are emitted again when the message comes back",
      { cause: error },
    );
  });
}

const allPassed = (checks: CheckResult[]) =>
  CHECKS.every((name) => checks.some((c) => c.name === name && c.passed));

/** SIGTERM arrived during the restore: the message is released, nothing is written. */
class Interrupted extends Error {}
