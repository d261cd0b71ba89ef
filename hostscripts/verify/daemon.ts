import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { GetObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import {
  ChangeMessageVisibilityCommand,
  DeleteMessageCommand,
  ReceiveMessageCommand,
  type Message,
  type SQSClient,
} from "@aws-sdk/client-sqs";
import { $, type Shell } from "zx";
import {
  CHECKS,
  archiveKey,
  backupIdTime,
  parseBackupCreated,
  parseManifest,
  parseManifestKey,
  parseVerifyConfig,
  type BackupCreatedMessage,
  type BackupManifest,
  type BackupRef,
  type CapturedPosition,
  type CheckName,
  type CheckResult,
  type RecoveryPoint,
  type RestoredTable,
  type Verdict,
  type VerificationReport,
  type VerifyConfig,
  verificationKey,
} from "../../contracts";
import { createAwsClients } from "../common/aws";
import { catchUp, type CatchUpOptions } from "./catchup";
import { DEFAULT_DOWNLOAD, openRanged, type RangedDownloadOptions } from "../restore/download";
import { DEFAULT_DRIFT, judgeDrift } from "./history";
import {
  checkPages,
  checkTable,
  comparePositions,
  compareInventory,
  judgeTables,
  readRecoveryPoint,
  readRestoredPosition,
  readRestoredTables,
  type RestoredPosition,
} from "./checks";
import type { CommandOutcome, Subcommand } from "../common/command";
import { ExitCode, PipelineError, messageOf } from "../common/errors";
import { extractArchive, type Extraction } from "../restore/extract";
import { CheckFailure, judgeObjects } from "../restore/objects";
import { describeDrift, readReport } from "../restore/verdicts";
import type { Logger } from "../common/log";
import { sinkFromConfig, type MetricsSink } from "../common/metrics";
import {
  buildReport,
  isAlreadyWritten,
  reportMetrics,
  tagBackup,
  writeReport,
  type RestoreTimings,
} from "./report";
import {
  StartupFailure,
  findServerBinary,
  mapSourcePath,
  planScratchServer,
  prepareScratchTree,
  readServerBuild,
  removeReplicationState,
  startScratchServer,
  whyCannotRun,
  type ScratchServer,
  type ServerBuild,
} from "../restore/scratch-server";

/**
 * `mysql-backup verify` (DESIGN §1 steps 10–15): take one `backup.created` message at a time, restore the
 * backup into a scratch server, run the checks of §4, write `verification.json` and the metrics.
 *
 * What happens to the message depends on the outcome:
 * - "verified" / "failed": a definitive verdict on the backup. The report and metrics are written, then
 *   the message is deleted.
 * - "unsupported": this verifier cannot run the backup's server (another flavor, a newer series). Said once:
 *   a report with that verdict, the failure metric (nobody has proven the backup), the message deleted.
 * - "rejected": the message itself is bad (not JSON, fails the schema, a manifest key outside the layout).
 *   No report can be trusted to a key the message made up, so none is written; the message is made
 *   visible again at once so it reaches the DLQ after the redrive count, where the DLQ alarm pages.
 * - "infrastructure": the verifier's host or AWS failed (S3 unreachable, scratch disk full, no server
 *   binary). Nothing is said about the backup; the message stays and is retried after its visibility timeout.
 * - "interrupted": SIGTERM arrived mid-restore. The scratch server is stopped, the scratch directory
 *   removed, and the message made visible again at once for another verifier; no verdict is written.
 * - "idle": `--once` found no message within the idle bound.
 *
 * At least once, one verdict: a message whose backup already has a `verification.json` returns that report
 * (`alreadyReported`) without restoring again, and the report is written only if none exists (a
 * conditional write), so a duplicate delivered to two verifiers at once cannot yield two verdicts.
 * While a restore runs the message's visibility is extended every third of its timeout, so a restore
 * may last longer than the timeout without another verifier receiving the message.
 *
 * Exit codes (`--once`): 0 verified, idle or interrupted (a stop asked for by systemd is not a failure),
 * VerificationFailed (10) for a failed or unsupported verdict, VerifierInfrastructure (11) for rejected
 * and infrastructure outcomes (the message was not handled and stays in the queue).
 */

/** How one message (or the lack of one) ended. */
export type Outcome =
  "verified" | "failed" | "unsupported" | "rejected" | "infrastructure" | "interrupted" | "idle";

/** The result of one verification, as `--json` prints it (the demo and the benchmark read it). */
export interface VerificationResult {
  outcome: Outcome;
  verdict: Verdict | null;
  failedCheck: CheckName | null;
  backupId: string | null;
  manifestKey: string | null;
  /** Where `verification.json` was written, when it was. */
  reportKey: string | null;
  timings: RestoreTimings;
  position: { captured: CapturedPosition | null; restored: RestoredPosition | null };
  tables: RestoredTable[];
  checks: CheckResult[];
  /** For rejected and infrastructure outcomes: what went wrong and what to do. */
  error: { message: string; hint: string } | null;
  /** The `verification.json` written for a verdict, as written. */
  report: VerificationReport | null;
  /** True when the backup already had a verdict: nothing was restored, `report` is the stored one. */
  alreadyReported: boolean;
}

/** What the verifier runs on; tests pass real clients against the emulator and a memory logger. */
export interface VerifierDeps {
  s3: S3Client;
  sqs: SQSClient;
  metrics: MetricsSink;
  log: Logger;
  $: Shell;
  now: () => Date;
  /** This verifier's name in reports. */
  hostname: string;
  /** SIGTERM: stops the daemon, and interrupts a running restore (its message is released). */
  signal?: AbortSignal;
}

/** How the verifier loop runs. */
export interface VerifierOptions {
  /** Handle at most one message, then return. */
  once: boolean;
  /** With `once`: how long to keep polling an empty queue before giving up. Defaults to 60. */
  idleSeconds?: number;
}

const noTimings = (): RestoreTimings => ({
  downloadExtractSeconds: 0,
  recoverySeconds: 0,
  checksSeconds: 0,
  restoreSeconds: 0,
});

function emptyResult(outcome: Outcome): VerificationResult {
  return {
    outcome,
    verdict: null,
    failedCheck: null,
    backupId: null,
    manifestKey: null,
    reportKey: null,
    timings: noTimings(),
    position: { captured: null, restored: null },
    tables: [],
    checks: [],
    error: null,
    report: null,
    alreadyReported: false,
  };
}

/**
 * The verifier loop. With `once`, returns the result of the first message (or "idle"); otherwise runs
 * `config.concurrency` workers, each polling and restoring on its own, until `deps.signal` aborts, and
 * returns the last result any of them had.
 */
export async function runVerifier(
  config: VerifyConfig,
  options: VerifierOptions,
  deps: VerifierDeps,
): Promise<VerificationResult> {
  const workers = options.once ? 1 : (config.concurrency ?? 1);
  const latest = { result: emptyResult("idle") };
  await Promise.all(
    Array.from({ length: workers }, (_, i) =>
      runWorker(
        config,
        options,
        { ...deps, log: workers > 1 ? deps.log.with({ worker: i + 1 }) : deps.log },
        latest,
      ),
    ),
  );
  return latest.result;
}

/** One worker's loop: receive, handle, repeat; `latest` is shared by all workers. */
async function runWorker(
  config: VerifyConfig,
  options: VerifierOptions,
  deps: VerifierDeps,
  latest: { result: VerificationResult },
): Promise<void> {
  const idleUntil = deps.now().getTime() + (options.idleSeconds ?? 60) * 1000;
  while (!deps.signal?.aborted) {
    const message = await receiveOrWait(config, options, deps);
    if (message !== undefined) {
      latest.result = await handleMessage(config, message, deps);
      if (options.once) return;
    } else if (options.once && deps.now().getTime() >= idleUntil) {
      deps.log.info("no backup.created message arrived; nothing to verify", {
        queueUrl: config.sqs.queueUrl,
      });
      return;
    }
  }
}

/** A daemon outlives a queue outage: it logs, waits and polls again; `--once` reports the outage instead. */
async function receiveOrWait(
  config: VerifyConfig,
  options: VerifierOptions,
  deps: VerifierDeps,
): Promise<Message | undefined> {
  try {
    return await receiveOne(config, deps);
  } catch (error) {
    if (options.once || !(error instanceof PipelineError)) throw error;
    deps.log.error(error.message, { hint: error.hint, retry: `polling again in ${QUEUE_RETRY_SECONDS}s` });
    await sleep(QUEUE_RETRY_SECONDS * 1000, undefined, { signal: deps.signal }).catch(() => undefined);
    return undefined;
  }
}

/** How long the daemon waits after the queue could not be reached. */
const QUEUE_RETRY_SECONDS = 10;

async function receiveOne(config: VerifyConfig, deps: VerifierDeps): Promise<Message | undefined> {
  try {
    const received = await deps.sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: config.sqs.queueUrl,
        MaxNumberOfMessages: 1,
        WaitTimeSeconds: config.sqs.waitTimeSeconds ?? 20,
        VisibilityTimeout: config.sqs.visibilityTimeoutSeconds ?? 3600,
        MessageSystemAttributeNames: ["ApproximateReceiveCount"],
      }),
      { abortSignal: deps.signal },
    );
    return received.Messages?.[0];
  } catch (error) {
    if (deps.signal?.aborted) return undefined;
    throw new PipelineError(
      "VerifierInfrastructure",
      `cannot receive from the verification queue ${config.sqs.queueUrl}: ${messageOf(error)}`,
      "check the verifier's network path and IAM permissions for SQS",
      { cause: error },
    );
  }
}

/** Handles one message to its outcome; only a definitive verdict deletes it. */
async function handleMessage(
  config: VerifyConfig,
  sqsMessage: Message,
  deps: VerifierDeps,
): Promise<VerificationResult> {
  const receiveCount = sqsMessage.Attributes?.ApproximateReceiveCount;
  const log = deps.log.with({ messageId: sqsMessage.MessageId, receiveCount });
  let message: BackupCreatedMessage;
  let ref: BackupRef;
  try {
    message = parseBackupCreated(sqsMessage.Body);
    ref = checkManifestKey(message);
  } catch (error) {
    return reject(config, sqsMessage, messageOf(error), { ...deps, log });
  }
  const backupLog = log.with({ backupId: message.backupId, cluster: message.cluster, host: message.host });
  backupLog.info("verifying backup", { manifestKey: message.manifestKey });
  const heartbeat = keepInvisible(config, sqsMessage, { ...deps, log: backupLog });
  try {
    const result = await verifyAndReport(config, message, ref, { ...deps, log: backupLog });
    heartbeat.stop();
    await deps.sqs.send(
      new DeleteMessageCommand({ QueueUrl: config.sqs.queueUrl, ReceiptHandle: sqsMessage.ReceiptHandle }),
    );
    return result;
  } catch (error) {
    heartbeat.stop();
    if (deps.signal?.aborted) return release(config, sqsMessage, message, { ...deps, log: backupLog });
    const failure =
      error instanceof PipelineError
        ? error
        : new PipelineError(
            "VerifierInfrastructure",
            messageOf(error),
            "look at the verifier's log; this may be a bug",
            {
              cause: error,
            },
          );
    backupLog.error(`verification of ${message.backupId} did not finish: ${failure.message}`, {
      hint: failure.hint,
      retry: `the message stays in the queue and is retried after its visibility timeout (${config.sqs.visibilityTimeoutSeconds ?? 3600}s); after the redrive count it moves to the DLQ`,
    });
    return {
      ...emptyResult("infrastructure"),
      backupId: message.backupId,
      manifestKey: message.manifestKey,
      error: { message: failure.message, hint: failure.hint },
    };
  }
}

/**
 * Extends the message's visibility every third of its timeout while its restore runs, so no other verifier
 * receives it meanwhile. A failed extension is logged, not fatal: a second verifier that gets the message
 * finds the verdict already written (or writes the same one).
 */
function keepInvisible(
  config: VerifyConfig,
  sqsMessage: Message,
  deps: Pick<VerifierDeps, "sqs" | "log">,
): { stop(): void } {
  const timeout = config.sqs.visibilityTimeoutSeconds ?? 3600;
  const timer = setInterval(
    () => {
      deps.sqs
        .send(
          new ChangeMessageVisibilityCommand({
            QueueUrl: config.sqs.queueUrl,
            ReceiptHandle: sqsMessage.ReceiptHandle,
            VisibilityTimeout: timeout,
          }),
        )
        .catch((error: unknown) =>
          deps.log.warn(`could not extend the message's visibility: ${messageOf(error)}`, {
            hint: "another verifier may receive it; it will find this verifier's verdict or write the same one",
          }),
        );
    },
    Math.max(1, Math.floor(timeout / 3)) * 1000,
  );
  return { stop: () => clearInterval(timer) };
}

/** SIGTERM mid-restore: the scratch is gone by now; the message is made visible again for another verifier. */
async function release(
  config: VerifyConfig,
  sqsMessage: Message,
  message: BackupCreatedMessage,
  deps: VerifierDeps,
): Promise<VerificationResult> {
  await deps.sqs
    .send(
      new ChangeMessageVisibilityCommand({
        QueueUrl: config.sqs.queueUrl,
        ReceiptHandle: sqsMessage.ReceiptHandle,
        VisibilityTimeout: 0,
      }),
    )
    .catch((error: unknown) =>
      deps.log.warn(`could not release the message: ${messageOf(error)}`, {
        hint: "it becomes visible again after its visibility timeout",
      }),
    );
  const why = `stopped by a signal while verifying ${message.backupId}`;
  const hint = "nothing was written; the message was released and another verifier restores the backup";
  deps.log.warn(why, { hint });
  return {
    ...emptyResult("interrupted"),
    backupId: message.backupId,
    manifestKey: message.manifestKey,
    error: { message: why, hint },
  };
}

/** The manifest key's parts, which must follow the layout and name the message's cluster, host and backup. */
export function checkManifestKey(message: BackupCreatedMessage): BackupRef {
  const ref = parseManifestKey(message.manifestKey);
  const mismatched = (["cluster", "host", "backupId"] as const).filter((k) => ref[k] !== message[k]);
  if (mismatched.length > 0) {
    throw new Error(
      `manifestKey "${message.manifestKey}" does not match the message's ${mismatched
        .map((k) => `${k} "${message[k]}"`)
        .join(", ")}`,
    );
  }
  return ref;
}

/** Makes a bad message visible again at once so it reaches the DLQ after the redrive count. */
async function reject(
  config: VerifyConfig,
  sqsMessage: Message,
  why: string,
  deps: VerifierDeps,
): Promise<VerificationResult> {
  const hint =
    "the message is left in the queue and moves to the DLQ after the redrive count; fix the sender and delete it from the DLQ";
  deps.log.error(`rejected a message that is not a valid backup.created: ${why}`, {
    hint,
    body: (sqsMessage.Body ?? "").slice(0, 300),
  });
  await deps.sqs
    .send(
      new ChangeMessageVisibilityCommand({
        QueueUrl: config.sqs.queueUrl,
        ReceiptHandle: sqsMessage.ReceiptHandle,
        VisibilityTimeout: 0,
      }),
    )
    .catch((error: unknown) =>
      deps.log.warn(`could not make the rejected message visible again: ${messageOf(error)}`, {
        hint: "it becomes visible after its visibility timeout instead",
      }),
    );
  return { ...emptyResult("rejected"), error: { message: why, hint } };
}

/** Verifies, writes the report and the metrics; returns the result. Throws PipelineError for infrastructure. */
async function verifyAndReport(
  config: VerifyConfig,
  message: BackupCreatedMessage,
  ref: BackupRef,
  deps: VerifierDeps,
): Promise<VerificationResult> {
  const stored = await storedVerdict(message, ref, deps);
  if (stored !== null) return stored;
  const found = await verifyBackup(config, message, ref, deps);
  // Whatever a restore found after SIGTERM (a killed server, a cut download) says nothing about the backup.
  if (deps.signal?.aborted) throw new Interrupted(`verification of ${ref.backupId} was interrupted`);
  const now = deps.now();
  const report = buildReport({
    bucket: message.bucket,
    manifestKey: message.manifestKey,
    ref,
    manifest: found.manifest,
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
  // A duplicate delivered to another verifier may have finished first: its verdict stands.
  const raced = await storedVerdict(message, ref, deps);
  if (raced !== null) return raced;
  let reportKey: string;
  try {
    reportKey = await writeReport(deps.s3, report, ref, config.s3?.kmsKeyId);
  } catch (error) {
    if (!isAlreadyWritten(error)) throw s3Failure(`write verification.json for ${ref.backupId}`, error);
    const stored = await storedVerdict(message, ref, deps);
    if (stored === null)
      throw s3Failure(`write verification.json for ${ref.backupId} (S3 says one exists)`, error);
    return stored;
  }
  if (config.s3?.tagObjects) {
    // The report is the verdict; a missing tag only makes it less visible, so it never blocks the message.
    await tagBackup(deps.s3, message.bucket, ref, report.verdict).catch((error: unknown) =>
      deps.log.warn(
        `could not tag the objects of ${ref.backupId} verified=${report.verdict === "verified"}: ${messageOf(error)}`,
        {
          hint: "check s3:PutObjectTagging for the verifier's role; verification.json holds the verdict",
        },
      ),
    );
  }
  await deps.metrics.put(reportMetrics(report, now)).catch((error: unknown) => {
    throw new PipelineError(
      "VerifierInfrastructure",
      `cannot emit the verification metrics: ${messageOf(error)}`,
      "check the metrics sink (CloudWatch permissions or the metrics file)",
      { cause: error },
    );
  });
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
  return {
    ...resultOfReport(report, reportKey),
    position: { captured: found.manifest?.position ?? null, restored: found.restored },
  };
}

/** The result a report stands for. */
function resultOfReport(report: VerificationReport, reportKey: string): VerificationResult {
  return {
    outcome: report.verdict,
    verdict: report.verdict,
    failedCheck: report.failedCheck,
    backupId: report.backupId,
    manifestKey: report.manifestKey,
    reportKey,
    timings: report.timings,
    position: { captured: null, restored: null },
    tables: report.tables,
    checks: report.checks,
    error: null,
    report,
    alreadyReported: false,
  };
}

/** The verdict already written for this backup, as a result; null when there is none yet. */
async function storedVerdict(
  message: BackupCreatedMessage,
  ref: BackupRef,
  deps: VerifierDeps,
): Promise<VerificationResult | null> {
  const report = await s3Step(`read s3://${message.bucket}/${verificationKey(ref)}`, () =>
    readReport(deps.s3, message.bucket, ref),
  );
  if (report === null) return null;
  deps.log.info(
    `backup ${ref.backupId} already has the verdict "${report.verdict}" (${report.verifiedAt} by ${report.verifier.host}); not restoring it again`,
    { reportKey: verificationKey(ref) },
  );
  return { ...resultOfReport(report, verificationKey(ref)), alreadyReported: true };
}

const allPassed = (checks: CheckResult[]) =>
  CHECKS.every((name) => checks.some((c) => c.name === name && c.passed));
const allPassedBut = (last: CheckName, checks: CheckResult[]) =>
  CHECKS.filter((name) => name !== last).every((name) => checks.some((c) => c.name === name && c.passed));

/** What a restore found, whatever check it stopped at. */
interface Findings {
  manifest: BackupManifest | null;
  checks: CheckResult[];
  restored: RestoredPosition | null;
  tables: RestoredTable[];
  serverVersion: string | null;
  timings: RestoreTimings;
  /** Set when this verifier cannot run the backup's server; nothing was restored. */
  unsupportedReason: string | null;
  recoveryPoint: RecoveryPoint | null;
}

/** Runs the checks in order into a fresh scratch directory, removed again in every case. */
async function verifyBackup(
  config: VerifyConfig,
  message: BackupCreatedMessage,
  ref: BackupRef,
  deps: VerifierDeps,
): Promise<Findings> {
  const findings: Findings = {
    manifest: null,
    checks: [],
    restored: null,
    tables: [],
    serverVersion: null,
    timings: noTimings(),
    unsupportedReason: null,
    recoveryPoint: null,
  };
  const binary = await findServerBinary(config.mysqld?.binary);
  const build = await readServerBuild(binary);
  const work = await mkdtemp(join(config.scratchDir, `${ref.backupId}-`)).catch((error: unknown) => {
    throw new PipelineError(
      "VerifierInfrastructure",
      `cannot create a scratch directory in ${config.scratchDir}: ${messageOf(error)}`,
      "check that scratchDir exists, is writable and has free space",
      { cause: error },
    );
  });
  const started = performance.now();
  try {
    await restoreAndCheck(config, message, ref, { ...deps, binary, build, work }, findings);
  } catch (error) {
    if (error instanceof Unsupported) {
      findings.unsupportedReason = error.message;
      return findings;
    }
    if (!(error instanceof CheckFailure)) throw error;
    findings.checks.push({ name: error.check, passed: false, detail: error.message });
  } finally {
    findings.timings.restoreSeconds = seconds(started);
    await rm(work, { recursive: true, force: true, maxRetries: 3 });
  }
  return findings;
}

const seconds = (from: number) => (performance.now() - from) / 1000;

/** The backup needs a server this verifier cannot run: the verdict is "unsupported". */
class Unsupported extends Error {}

/** SIGTERM arrived during the restore: the message is released, nothing is written. */
class Interrupted extends Error {}

/** The checks in CHECKS order; the first failure throws a CheckFailure that ends the restore. */
async function restoreAndCheck(
  config: VerifyConfig,
  message: BackupCreatedMessage,
  ref: BackupRef,
  deps: VerifierDeps & { binary: string; build: ServerBuild; work: string },
  findings: Findings,
): Promise<void> {
  const started = performance.now();
  const manifest = await fetchManifest(deps.s3, message, ref);
  findings.manifest = manifest;
  const unsupported = whyCannotRun(deps.build, manifest.server);
  if (unsupported !== null) throw new Unsupported(`${unsupported} (${deps.binary})`);
  const root = join(deps.work, "root");
  await mkdir(root, { mode: 0o750 });
  const extraction = await downloadAndExtract(deps.s3, message.bucket, manifest, root, {
    ...DEFAULT_DOWNLOAD,
    ...config.download,
    signal: deps.signal,
  });
  findings.checks.push(judgeObjects(manifest, extraction));
  findings.timings.downloadExtractSeconds = seconds(started);

  if (config.catchUp !== undefined) {
    // The source replica's own connection would stand in the way of the catch-up's CHANGE MASTER.
    await removeReplicationState(
      mapSourcePath(manifest.snapshot.sourceRoot, root, manifest.settings.datadir),
    );
  }
  const recovering = performance.now();
  const user = config.mysqld?.user ?? "mysql";
  const server = await startRestoredServer(
    manifest,
    deps,
    user,
    (config.mysqld?.startTimeoutSeconds ?? 600) * 1000,
    config.mysqld?.bufferPoolMiB,
  );
  if (deps.signal?.aborted) await server.stop(5_000);
  findings.timings.recoverySeconds = seconds(recovering);
  findings.checks.push({
    name: "startup",
    passed: true,
    detail: `crash recovery finished in ${findings.timings.recoverySeconds.toFixed(1)}s`,
  });
  const checking = performance.now();
  try {
    await checkRestoredServer(
      server,
      manifest,
      findings,
      catchUpOptions(config),
      config.checks?.extended ?? false,
    );
    await server.stop();
    if (allPassedBut("pages", findings.checks) && !deps.signal?.aborted) {
      const datadir = mapSourcePath(manifest.snapshot.sourceRoot, root, manifest.settings.datadir);
      findings.checks.push(await checkPages(datadir, manifest.settings.innodbPageSize));
    }
  } finally {
    await server.stop();
    findings.timings.checksSeconds = seconds(checking);
  }
}

/** Downloads and validates the manifest; a missing or invalid one fails "objects": never verified. */
async function fetchManifest(
  s3: S3Client,
  message: BackupCreatedMessage,
  ref: BackupRef,
): Promise<BackupManifest> {
  const where = `s3://${message.bucket}/${message.manifestKey}`;
  const body = (await getObject(s3, message.bucket, message.manifestKey, "manifest.json"))?.Body;
  if (body === undefined) {
    throw new CheckFailure(
      "objects",
      `manifest.json is missing at ${where}: the backup is incomplete (the manifest is uploaded last)`,
    );
  }
  const text = await s3Step(`read ${where}`, () => body.transformToString());
  let manifest: BackupManifest;
  try {
    manifest = parseManifest(JSON.parse(text));
  } catch (error) {
    throw new CheckFailure(
      "objects",
      `manifest.json at ${where} is not a valid manifest: ${messageOf(error)}`,
    );
  }
  const problems = [
    ...(["backupId", "cluster", "host"] as const)
      .filter((k) => manifest[k] !== ref[k])
      .map((k) => `its ${k} is "${manifest[k]}", the key says "${ref[k]}"`),
    ...(manifest.archive.key !== archiveKey(ref)
      ? [`its archive key "${manifest.archive.key}" is not "${archiveKey(ref)}"`]
      : []),
    ...(manifest.archive.sha256 !== message.archiveSha256
      ? [`its archive sha256 ${manifest.archive.sha256} differs from the message's ${message.archiveSha256}`]
      : []),
  ];
  if (problems.length > 0)
    throw new CheckFailure("objects", `manifest.json at ${where}: ${problems.join("; ")}`);
  return manifest;
}

/** Streams the archive through the hash, zstd and tar into `root`; a missing archive fails "objects". */
async function downloadAndExtract(
  s3: S3Client,
  bucket: string,
  manifest: BackupManifest,
  root: string,
  options: RangedDownloadOptions,
): Promise<Extraction> {
  const where = `s3://${bucket}/${manifest.archive.key}`;
  const download = await openArchive(s3, bucket, manifest.archive.key, options);
  if (download === null) throw new CheckFailure("objects", `the archive ${where} is missing`);
  const extraction = await extractArchive(download.body, root);
  // A body shorter than S3 announced is a broken download, not a broken backup.
  if (download.bytes !== undefined && extraction.archive.bytes !== download.bytes) {
    throw new PipelineError(
      "VerifierInfrastructure",
      `the download of ${where} ended after ${extraction.archive.bytes} of ${download.bytes} bytes`,
      "check the verifier's network path to S3; the message will be retried",
    );
  }
  return extraction;
}

/** The archive opened for a ranged download, or null when it does not exist. */
async function openArchive(s3: S3Client, bucket: string, key: string, options: RangedDownloadOptions) {
  try {
    return await openRanged(s3, bucket, key, options);
  } catch (error) {
    const e = error as { name?: string; $metadata?: { httpStatusCode?: number } };
    if (e.name === "NoSuchKey" || e.$metadata?.httpStatusCode === 404) return null;
    throw new PipelineError(
      "VerifierInfrastructure",
      `cannot download the archive s3://${bucket}/${key}: ${messageOf(error)}`,
      "check the verifier's network path to S3 and its IAM permissions (s3:GetObject, kms:Decrypt)",
      { cause: error },
    );
  }
}

/** Prepares the restored tree (binlog index, owner) and starts the server; a failure is "startup". */
async function startRestoredServer(
  manifest: BackupManifest,
  deps: VerifierDeps & { binary: string; work: string },
  user: string,
  timeoutMs: number,
  bufferPoolMiB: number | undefined,
): Promise<ScratchServer> {
  try {
    const plan = planScratchServer(manifest, deps.work, { binary: deps.binary, user, bufferPoolMiB });
    await prepareScratchTree(manifest, plan);
    await deps.$`chown -R ${user}: ${deps.work}`.quiet().catch((error: unknown) => {
      throw new PipelineError(
        "VerifierInfrastructure",
        `cannot give the scratch directory to the OS user "${user}": ${messageOf(error)}`,
        "check that mysqld.user exists on the verifier host",
        { cause: error },
      );
    });
    return await startScratchServer(plan, timeoutMs, deps.signal);
  } catch (error) {
    if (error instanceof StartupFailure) throw new CheckFailure("startup", error.message);
    throw error;
  }
}

/** The catch-up settings with their defaults, or null when catch-up is off. */
function catchUpOptions(config: VerifyConfig): CatchUpOptions | null {
  if (config.catchUp === undefined) return null;
  return { optionFile: config.catchUp.optionFile, timeoutSeconds: config.catchUp.timeoutSeconds ?? 600 };
}

/** "position", "tables", the recovery point and (when configured) "replication" against the running server. */
async function checkRestoredServer(
  server: ScratchServer,
  manifest: BackupManifest,
  findings: Findings,
  catchUpWith: CatchUpOptions | null,
  extended: boolean,
): Promise<void> {
  const conn = await server.connect();
  try {
    const [version] = (await conn.query("SELECT @@version AS version"))[0] as Array<{ version: string }>;
    findings.serverVersion = version.version;
    findings.restored = await readRestoredPosition(conn, manifest.server.flavor);
    const position = comparePositions(manifest.server.flavor, manifest.position, findings.restored);
    findings.checks.push(position);
    if (!position.passed) return;
    const comparison = compareInventory(manifest.tables, await readRestoredTables(conn));
    const missing = new Set(comparison.missing);
    const tables = [];
    for (const table of manifest.tables) {
      if (!missing.has(`${table.schema}.${table.table}`))
        tables.push(await checkTable(conn, table, extended));
    }
    findings.tables = tables.map(({ passed: _passed, ...table }) => table);
    findings.checks.push(judgeTables(comparison, tables, extended));
    findings.recoveryPoint = await readRecoveryPoint(conn, manifest.tables, new Date(manifest.startedAt));
    if (catchUpWith !== null && findings.checks.every((c) => c.passed)) {
      findings.checks.push(await catchUp(conn, manifest, catchUpWith));
    }
  } finally {
    await conn.end().catch(() => undefined);
  }
}

/** GetObject's response, or null when the object does not exist; other failures are the verifier's. */
async function getObject(s3: S3Client, bucket: string, key: string, what: string) {
  try {
    return await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  } catch (error) {
    const e = error as { name?: string; $metadata?: { httpStatusCode?: number } };
    if (e.name === "NoSuchKey" || e.$metadata?.httpStatusCode === 404) return null;
    throw new PipelineError(
      "VerifierInfrastructure",
      `cannot download ${what} s3://${bucket}/${key}: ${messageOf(error)}`,
      "check the verifier's network path to S3 and its IAM permissions (s3:GetObject, kms:Decrypt)",
      { cause: error },
    );
  }
}

/** Runs an S3 call; its failure is the verifier's infrastructure, not the backup's. */
async function s3Step<T>(what: string, step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (error) {
    throw s3Failure(what, error);
  }
}

function s3Failure(what: string, error: unknown): PipelineError {
  return new PipelineError(
    "VerifierInfrastructure",
    `cannot ${what}: ${messageOf(error)}`,
    "check the verifier's access to S3",
    {
      cause: error,
    },
  );
}

/** The exit code of an outcome (see the module comment). */
export function exitCodeOf(outcome: Outcome): number {
  switch (outcome) {
    case "verified":
    case "idle":
    case "interrupted":
      return ExitCode.Ok;
    case "failed":
    case "unsupported":
      return ExitCode.VerificationFailed;
    default:
      return ExitCode.VerifierInfrastructure;
  }
}

/** The lines a person reads for a result. */
export function summarizeResult(result: VerificationResult): string {
  switch (result.outcome) {
    case "idle":
      return "no backup to verify: the queue stayed empty";
    case "rejected":
      return `rejected an invalid message: ${result.error?.message}\n${result.error?.hint}`;
    case "infrastructure":
      return `verification of ${result.backupId} did not finish (will be retried): ${result.error?.message}\n${result.error?.hint}`;
    case "interrupted":
      return `${result.error?.message}\n${result.error?.hint}`;
    case "unsupported":
      return `backup ${result.backupId}: UNSUPPORTED — ${result.report?.unsupportedReason}\nrun a verifier with that server (mysqld.binary) for this cluster`;
    default: {
      const failed = result.checks.find((c) => !c.passed);
      const t = result.timings;
      return [
        `backup ${result.backupId}: ${result.outcome.toUpperCase()}${failed ? ` — check "${failed.name}" failed: ${failed.detail}` : ""}`,
        `restore ${t.restoreSeconds}s (download+extract ${t.downloadExtractSeconds}s, recovery ${t.recoverySeconds}s, checks ${t.checksSeconds}s)`,
        `GTID captured ${result.position.captured?.gtidBinlogPos ?? result.position.captured?.gtidExecuted ?? "-"}, restored ${result.position.restored?.gtidBinlogPos ?? result.position.restored?.gtidExecuted ?? "-"}`,
        `checks: ${result.checks.map((c) => `${c.name} ${c.passed ? "ok" : "FAILED"}`).join(", ")}; ${result.tables.length} tables, ${result.tables.reduce((s, x) => s + (x.rows ?? 0), 0)} rows`,
        ...(result.report?.drift
          ? [
              `drift: ${describeDrift(result.report.drift) ?? `none since ${result.report.drift.previousBackupId ?? "(no earlier verified backup)"}`}`,
            ]
          : []),
        ...(result.report?.recoveryPoint
          ? [
              `recovery point: ${result.report.recoveryPoint.lagSeconds}s before the lock (${result.report.recoveryPoint.table})`,
            ]
          : []),
      ].join("\n");
    }
  }
}

/** `mysql-backup verify`: the daemon, or `--once` for tests and the demo. */
export const verifyCommand: Subcommand<VerifyConfig> = {
  name: "verify",
  describe: "restore backups from the queue into a scratch server and check them",
  parseConfig: parseVerifyConfig,
  async run(config, flags, log): Promise<CommandOutcome> {
    const clients = await createAwsClients(config.aws);
    const stop = new AbortController();
    const onSignal = () => {
      log.info("stopping: a restore in progress is interrupted and its message released");
      stop.abort();
    };
    process.once("SIGTERM", onSignal);
    process.once("SIGINT", onSignal);
    try {
      const result = await runVerifier(
        config,
        { once: flags.once },
        {
          ...clients,
          metrics: sinkFromConfig(config.metrics, clients.cloudwatch),
          log,
          $: $({ quiet: true }),
          now: () => new Date(),
          hostname: hostname(),
          signal: stop.signal,
        },
      );
      return { exitCode: exitCodeOf(result.outcome), result, summary: summarizeResult(result) };
    } finally {
      process.off("SIGTERM", onSignal);
      process.off("SIGINT", onSignal);
      clients.s3.destroy();
      clients.sqs.destroy();
      clients.cloudwatch.destroy();
    }
  },
};
