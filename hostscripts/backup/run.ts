import { mkdir, unlink } from "node:fs/promises";
import { join } from "node:path";
import type { S3Client } from "@aws-sdk/client-s3";
import type { SQSClient } from "@aws-sdk/client-sqs";
import {
  DEFAULT_PREFIX,
  hostPrefix,
  manifestKey,
  newBackupId,
  type BackupConfig,
  type BackupRef,
  type CapturedPosition,
  type RetentionClass,
} from "../../contracts";
import { noCheckpoint, type Checkpoint } from "../common/checkpoint";
import { PipelineError, messageOf } from "../common/errors";
import type { MetricsSink } from "../common/metrics";
import { logProgress, type ProgressView } from "../common/progress";
import type { ArchiveResult } from "./archive";
import { round, secondsSince } from "./durations";
import { freeze, type FreezeDeps, type LockWindow } from "./freeze";
import type { LockStep } from "./lock";
import { backupCreatedOf, buildManifest } from "./manifest";
import type { ArchiveUpload, UploadedChunk } from "./multipart";
import { emitFailed, emitSucceeded } from "./metrics";
import type { YieldOutcome } from "./priority";
import { repairAfterCrash } from "./repair";
import { DEFAULT_KEEP_LOCAL, pruneLocalBackups } from "./retention";
import { decideRetention, recordCompleted } from "./retention-class";
import { acquireRunLock } from "../common/runlock";
import { OUTBOX, stagePublication, type Outbox } from "./staging";
import { archiveAndUpload } from "./transfer";
import { sendBackupCreated, uploadManifest, uploadTargetOf, type UploadTarget } from "./upload";

/**
 * `mysql-backup backup` (DESIGN §1 steps 1–9) on a replica: prove the server's files are on the snapshotted
 * volume, lock, capture the position and snapshot, unlock — within a hard timeout —, archive the snapshot,
 * remove it, upload the archive and then the manifest, send `backup.created`, keep the newest local backups.
 * Metrics are emitted on every run, success or failure.
 *
 * Once every part of the archive is up, the manifest and the message are staged on disk before the upload
 * is completed (staging.ts): from the moment the archive exists in S3, a run killed at any point leaves what
 * the next one needs to announce it (repair.ts).
 */

/** Everything `runBackup` touches outside itself, so a test can run it for real or with a fake part. */
export interface BackupDeps extends Omit<FreezeDeps, "checkpoint"> {
  s3: S3Client;
  sqs: SQSClient;
  metrics: MetricsSink;
  /** Wall clock, for the backup id and timestamps. Defaults to `new Date()`. */
  clock?: () => Date;
  /** How archive and upload progress is shown. Defaults to a `progress` log line every 30 s. */
  progress?: ProgressView;
  /**
   * Called once the lock is released, before the archive: the CLI lowers its own priority there
   * (`yieldToDatabase`). Absent when a test runs the backup inside its own process.
   */
  afterUnlock?: () => Promise<YieldOutcome>;
  /** Called at each pause point (`started` … `signal`); the backup waits for it. Defaults to `noCheckpoint`. */
  checkpoint?: Checkpoint;
}

/** What a backup produced; printed with `--json`, read by the demo and the benchmarks. */
export interface BackupResult {
  ok: true;
  backupId: string;
  cluster: string;
  host: string;
  bucket: string;
  /** The archive's objects (chunks) in S3, in order. */
  archiveKeys: string[];
  manifestKey: string;
  messageId: string;
  server: { flavor: string; version: string };
  /** The lock mode (`none`, `commit`, `global`) and who chose it. */
  lockMode: string;
  lockChosenBy: string;
  lockMethod: string;
  lockMs: number;
  /** Part of `lockMs` spent waiting for the lock statement to return. */
  acquireMs: number;
  /** Part of `lockMs` from the statement that holds commits (BLOCK_COMMIT, FTWRL) to the unlock. */
  holdMs: number;
  /** Each statement and step of the lock window: when it started (ms after the first) and how long it took. */
  lockSteps: LockStep[];
  snapshotMs: number;
  archiveBytes: number;
  rawBytes: number;
  /** The archive's digest (manifest `archive.sha256`: of its chunks' sha256s). */
  archiveSha256: string;
  /** Each archive object: key, size, sha256, and the tar bytes it holds. */
  chunks: Array<{ key: string; bytes: number; sha256: string; tarBytes: number }>;
  files: number;
  /** Files a chunk boundary cut (listed in pieces). */
  splitFiles: number;
  directories: number;
  skipped: string[];
  tables: number;
  archiveSeconds: number;
  uploadSeconds: number;
  /** How the archive went up: chunks, parts, part size (raised past 10,000 parts), parts in flight. */
  upload: ArchiveUpload;
  totalSeconds: number;
  position: CapturedPosition;
  /** The archive's chunk files in the local backup directory, in order. */
  localArchives: string[];
  removedLocal: string[];
  /** The priority the backup yielded to after the lock (absent when it kept its own). */
  priorityAfterLock?: YieldOutcome;
  /** The class archive and manifest were tagged with (`retention=<class>`): how long the bucket keeps them. */
  retention: RetentionClass;
}

/** The run lock in `localDir`: one backup at a time per host. */
export const RUN_LOCK_FILE = ".mysql-backup.lock";

/** One run: its deps with their defaults filled in, and what names and locates this backup. */
export interface BackupRun {
  config: BackupConfig;
  /** The log carries the backup id, cluster and host. */
  deps: BackupDeps & Required<Pick<BackupDeps, "clock" | "progress" | "checkpoint">>;
  backupId: string;
  startedAt: Date;
  /** `performance.now()` at the start, for `totalSeconds`. */
  started: number;
  /** This backup's directory below `config.localDir`. */
  dir: string;
  ref: BackupRef;
  target: UploadTarget;
}

/** A run once its retention class is decided (after the repair, which may complete a monthly backup). */
type ClassifiedRun = BackupRun & { retention: RetentionClass; target: { retention: RetentionClass } };

/**
 * Runs one backup: takes the run lock, repairs what a crashed run left, decides the backup's retention class
 * (retention-class.ts), then backs up. Throws AlreadyRunning without a metric when another live run holds
 * the lock (that run reports for itself), and any other failure as a PipelineError after emitting
 * BackupFailed with its reason.
 */
export async function runBackup(config: BackupConfig, deps: BackupDeps): Promise<BackupResult> {
  const run = startRun(config, deps);
  const { log, clock } = run.deps;
  await mkdir(config.localDir, { recursive: true, mode: 0o700 });
  const runLock = await acquireRunLock(join(config.localDir, RUN_LOCK_FILE));
  if (runLock.tookOverFrom)
    log.warn("took over the run lock of a run that died", { ...runLock.tookOverFrom });
  try {
    await run.deps.checkpoint("started");
    const repair = await repairAfterCrash({
      localDir: config.localDir,
      hostPrefix: hostPrefix(run.ref.prefix, config.cluster, config.host),
      bucket: config.s3.bucket,
      target: run.target,
      queueUrl: config.sqs.queueUrl,
      s3: deps.s3,
      sqs: deps.sqs,
      log,
      metrics: deps.metrics,
      cluster: config.cluster,
      host: config.host,
      now: clock,
    });
    const retention = await decideRetention(config.localDir, repair.messagesSent, run.startedAt, log);
    const result = await takeBackup({ ...run, retention, target: { ...run.target, retention } });
    await emitSucceeded(deps.metrics, log, config, result, clock());
    log.info("backup complete", {
      lockMs: result.lockMs,
      archiveBytes: result.archiveBytes,
      totalSeconds: result.totalSeconds,
    });
    return result;
  } catch (e) {
    const error = onCall(e, run.backupId, config.host);
    await emitFailed(deps.metrics, log, config, error.reason, clock());
    throw error;
  } finally {
    await runLock.release();
  }
}

/** Names the backup by its start time and fills in the defaults of the deps. */
function startRun(config: BackupConfig, deps: BackupDeps): BackupRun {
  const clock = deps.clock ?? (() => new Date());
  const startedAt = clock();
  const backupId = newBackupId(startedAt);
  const log = deps.log.with({ backupId, cluster: config.cluster, host: config.host });
  return {
    config,
    deps: {
      ...deps,
      log,
      clock,
      progress: deps.progress ?? logProgress(log),
      checkpoint: deps.checkpoint ?? noCheckpoint,
    },
    backupId,
    startedAt,
    started: performance.now(),
    dir: join(config.localDir, backupId),
    ref: { prefix: config.s3.prefix ?? DEFAULT_PREFIX, cluster: config.cluster, host: config.host, backupId },
    target: uploadTargetOf(config.s3),
  };
}

/** Steps 1–9, with the run lock held and what an earlier run left repaired. */
async function takeBackup(run: ClassifiedRun): Promise<BackupResult> {
  const { config, deps } = run;
  const window = await freeze(config, deps, run.backupId, run.dir);
  const yielded = await deps.afterUnlock?.();
  await deps.checkpoint("snapshot");
  const uploadStarted = performance.now();
  const { archive, upload, sealed } = await archiveAndUpload(run, window, (archive, uploaded) =>
    stage(run, window, archive, uploaded),
  );
  const { message } = sealed;
  await uploadManifest(deps.s3, run.target, message.manifestKey, sealed.manifest, deps.log);
  await recordCompleted(config.localDir, sealed.manifest, deps.clock(), deps.log);
  const uploadSeconds = secondsSince(uploadStarted);
  deps.log.info("archive and manifest uploaded", {
    bucket: run.target.bucket,
    manifestKey: message.manifestKey,
    uploadSeconds,
  });
  const messageId = await announce(run, message);
  const removedLocal = await pruneLocal(run);
  return resultOf(run, {
    window,
    archive,
    upload,
    manifest: sealed.manifest,
    uploadSeconds,
    messageId,
    removedLocal,
    yielded,
  });
}

/**
 * Step 8 staged: the manifest of the finished archive and the message that announces it, written to the
 * backup's directory while the archive's multipart upload waits to be completed.
 */
async function stage(
  run: ClassifiedRun,
  window: LockWindow,
  archive: ArchiveResult,
  uploaded: UploadedChunk[],
): Promise<Outbox> {
  const { config, deps } = run;
  const manifest = buildManifest(config, {
    backupId: run.backupId,
    startedAt: run.startedAt,
    completedAt: deps.clock(),
    facts: window.facts,
    dialect: window.dialect,
    lock: { choice: window.choice, plan: window.plan },
    lockMs: window.lockMs,
    frozen: window.frozen,
    sourceRoot: deps.driver.sourceRoot,
    archive,
    uploaded,
    retention: run.retention,
  });
  const outbox = { manifest, message: backupCreatedOf(manifest, run.target.bucket, manifestKey(run.ref)) };
  await stagePublication(run.dir, outbox);
  await deps.checkpoint("sealed");
  return outbox;
}

/** Step 9: sends `backup.created`, then empties the outbox; returns the SQS message id. */
async function announce(
  { config, deps, dir, target }: BackupRun,
  message: Outbox["message"],
): Promise<string> {
  await deps.checkpoint("signal");
  const messageId = await sendBackupCreated(deps.sqs, config.sqs.queueUrl, message, deps.log, target.retry);
  await deps.checkpoint("sent");
  await unlink(join(dir, OUTBOX));
  return messageId;
}

/** Keeps the newest `keepLocal` local backups; a failure to prune is logged and does not fail the backup. */
async function pruneLocal({ config, deps }: BackupRun): Promise<string[]> {
  const keep = config.keepLocal ?? DEFAULT_KEEP_LOCAL;
  return pruneLocalBackups(config.localDir, keep, deps.log, deps.checkpoint).catch((e: unknown) => {
    deps.log.warn("could not prune old local backups", { error: messageOf(e), localDir: config.localDir });
    return [];
  });
}

/** The result of a finished backup, printed with `--json`. */
function resultOf(
  run: ClassifiedRun,
  done: {
    window: LockWindow;
    archive: ArchiveResult;
    upload: ArchiveUpload;
    manifest: Outbox["manifest"];
    uploadSeconds: number;
    messageId: string;
    removedLocal: string[];
    yielded?: YieldOutcome;
  },
): BackupResult {
  const { window, archive, yielded, manifest } = done;
  const chunks = manifest.formatVersion === 2 ? manifest.archive.chunks : [];
  return {
    ok: true,
    backupId: run.backupId,
    cluster: run.config.cluster,
    host: run.config.host,
    bucket: run.target.bucket,
    archiveKeys: chunks.map((chunk) => chunk.key),
    manifestKey: manifestKey(run.ref),
    messageId: done.messageId,
    server: { flavor: window.dialect.flavor, version: window.dialect.version },
    lockMode: window.plan.mode,
    lockChosenBy: window.choice.chosenBy,
    lockMethod: window.plan.method,
    lockMs: round(window.lockMs),
    acquireMs: round(window.acquireMs),
    holdMs: round(window.holdMs),
    lockSteps: window.steps.map(({ step, atMs, ms }) => ({ step, atMs: round(atMs), ms: round(ms) })),
    snapshotMs: round(window.frozen.snapshotMs),
    archiveBytes: archive.bytes,
    rawBytes: archive.rawBytes,
    archiveSha256: manifest.archive.sha256,
    chunks: chunks.map(({ key, bytes, sha256, tarBytes }) => ({ key, bytes, sha256, tarBytes })),
    files: archive.files.length,
    splitFiles: archive.files.filter((file) => "pieces" in file).length,
    directories: archive.directories,
    skipped: archive.skipped,
    tables: window.frozen.tables.length,
    archiveSeconds: round(archive.seconds),
    uploadSeconds: round(done.uploadSeconds),
    upload: done.upload,
    totalSeconds: round(secondsSince(run.started)),
    position: window.frozen.position,
    localArchives: archive.chunks.map((chunk) => chunk.path),
    removedLocal: done.removedLocal,
    retention: run.retention,
    ...(yielded ? { priorityAfterLock: yielded } : {}),
  };
}

/** Any failure as a PipelineError whose message names the backup and the host. */
function onCall(e: unknown, backupId: string, host: string): PipelineError {
  const where = `backup ${backupId} of ${host}`;
  if (e instanceof PipelineError)
    return new PipelineError(e.kind, `${where}: ${e.message}`, e.hint, { cause: e });
  return new PipelineError(
    "Internal",
    `${where}: ${messageOf(e)}`,
    "this is a bug: report it with the log above",
    {
      cause: e,
    },
  );
}
