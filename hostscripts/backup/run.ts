import { mkdir, rm, unlink } from "node:fs/promises";
import { join } from "node:path";
import type { S3Client } from "@aws-sdk/client-s3";
import type { SQSClient } from "@aws-sdk/client-sqs";
import {
  ARCHIVE_OBJECT,
  DEFAULT_PREFIX,
  archiveKey,
  hostPrefix,
  manifestKey,
  newBackupId,
  type BackupConfig,
  type BackupRef,
  type CapturedPosition,
} from "../../contracts";
import { noCheckpoint, type Checkpoint } from "../common/checkpoint";
import { PipelineError, messageOf } from "../common/errors";
import type { MetricsSink } from "../common/metrics";
import { logProgress, type ProgressBar, type ProgressView } from "../common/progress";
import { GrowingFile, writeArchive, type ArchiveResult } from "./archive";
import { round, secondsSince } from "./durations";
import { freeze, runThenRemoveSnapshot, type FreezeDeps, type LockWindow } from "./freeze";
import { backupCreatedOf, buildManifest } from "./manifest";
import { emitFailed, emitSucceeded } from "./metrics";
import type { YieldOutcome } from "./priority";
import { repairAfterCrash } from "./repair";
import { DEFAULT_KEEP_LOCAL, pruneLocalBackups } from "./retention";
import { acquireRunLock } from "./runlock";
import type { Snapshot } from "./snapshot";
import { OUTBOX, UPLOAD_RECORD, stagePublication, writeProgressFile, type Outbox } from "./staging";
import {
  archiveBoundFor,
  sendBackupCreated,
  uploadArchive,
  uploadManifest,
  uploadTargetOf,
  type ArchiveUpload,
  type UploadTarget,
} from "./upload";

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
  archiveKey: string;
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
  snapshotMs: number;
  archiveBytes: number;
  rawBytes: number;
  archiveSha256: string;
  files: number;
  directories: number;
  skipped: string[];
  tables: number;
  archiveSeconds: number;
  uploadSeconds: number;
  /** How the archive went up: parts, part size (raised past 10,000 parts), parts in flight. */
  upload: ArchiveUpload;
  totalSeconds: number;
  position: CapturedPosition;
  localArchive: string;
  removedLocal: string[];
  /** The priority the backup yielded to after the lock (absent when it kept its own). */
  priorityAfterLock?: YieldOutcome;
}

/** The run lock in `localDir`: one backup at a time per host. */
export const RUN_LOCK_FILE = ".mysql-backup.lock";

/** One run: its deps with their defaults filled in, and what names and locates this backup. */
interface BackupRun {
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

/**
 * Runs one backup: takes the run lock, repairs what a crashed run left, then backs up. Throws AlreadyRunning
 * without a metric when another live run holds the lock (that run reports for itself), and any other
 * failure as a PipelineError after emitting BackupFailed with its reason.
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
    await repairAfterCrash({
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
    const result = await takeBackup(run);
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
async function takeBackup(run: BackupRun): Promise<BackupResult> {
  const { config, deps } = run;
  const window = await freeze(config, deps, run.backupId, run.dir);
  const yielded = await deps.afterUnlock?.();
  await deps.checkpoint("snapshot");
  const uploadStarted = performance.now();
  const { archive, upload, sealed } = await archiveAndUpload(run, window, (archive) =>
    stage(run, window, archive),
  );
  const { message } = sealed;
  await uploadManifest(deps.s3, run.target, message.manifestKey, sealed.manifest, deps.log);
  const uploadSeconds = secondsSince(uploadStarted);
  deps.log.info("archive and manifest uploaded", {
    bucket: run.target.bucket,
    manifestKey: message.manifestKey,
    uploadSeconds,
  });
  const messageId = await announce(run, message);
  const removedLocal = await pruneLocal(run);
  return resultOf(run, { window, archive, upload, uploadSeconds, messageId, removedLocal, yielded });
}

/**
 * Step 8 staged: the manifest of the finished archive and the message that announces it, written to the
 * backup's directory while the archive's multipart upload waits to be completed.
 */
async function stage(run: BackupRun, window: LockWindow, archive: ArchiveResult): Promise<Outbox> {
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
    archiveKey: archiveKey(run.ref),
  });
  const outbox = { manifest, message: backupCreatedOf(manifest, run.target.bucket, manifestKey(run.ref)) };
  await stagePublication(run.dir, outbox);
  await deps.checkpoint("sealed");
  return outbox;
}

/**
 * Steps 5–7 run together: the upload follows the archive as it is written, and the snapshot goes as soon as
 * the archive is complete. Before the upload is completed, `seal` runs on the finished archive (it stages
 * the publication). Whichever fails first stops the other; its error is the one reported, and the backup's
 * directory goes with it.
 */
async function archiveAndUpload<T>(
  run: BackupRun,
  window: LockWindow,
  seal: (archive: ArchiveResult) => Promise<T>,
): Promise<{ archive: ArchiveResult; upload: ArchiveUpload; sealed: T }> {
  const { deps } = run;
  const follow = new GrowingFile();
  const stopArchive = new AbortController();
  const archiveBar = deps.progress.start("archive", window.dataBytes);
  const uploadBar = deps.progress.start("upload", window.dataBytes);
  const archiving = archiveSnapshot(run, window.frozen.snapshot, follow, stopArchive.signal, archiveBar)
    .catch((e: unknown) => {
      follow.failed(e instanceof Error ? e : new Error(messageOf(e)));
      throw e;
    })
    .finally(() => archiveBar.end());
  const sealing: { value?: T } = {};
  const sealAfterArchive = async () => {
    sealing.value = await seal(await archiving);
  };
  const uploading = uploadFollowing(run, window.dataBytes, follow, uploadBar, sealAfterArchive)
    .catch((e: unknown) => {
      // A failed archive fails the follower first (synchronously), so this is the upload's own failure.
      if (!follow.hasFailed) stopArchive.abort(e);
      throw e;
    })
    .finally(() => uploadBar.end());
  const [archived, uploaded] = await Promise.allSettled([archiving, uploading]);
  if (archived.status === "rejected" || uploaded.status === "rejected") {
    await rm(run.dir, { recursive: true, force: true });
    throw stopArchive.signal.aborted || archived.status === "fulfilled"
      ? (uploaded as PromiseRejectedResult).reason
      : archived.reason;
  }
  const archive = archived.value;
  const upload = uploaded.value;
  if (!("value" in sealing))
    throw new Error("the upload completed without staging the manifest; this is a bug");
  deps.log.info("archive written and uploaded, snapshot removed", {
    archiveBytes: archive.bytes,
    rawBytes: archive.rawBytes,
    files: archive.files.length,
    archiveSeconds: archive.seconds,
    parts: upload.parts,
  });
  return { archive, upload, sealed: sealing.value as T };
}

/** Steps 5 and 6: the snapshot into the local archive, which `follow` tells the upload about; then the snapshot goes. */
function archiveSnapshot(
  { config, deps, backupId, dir }: BackupRun,
  snapshot: Snapshot,
  follow: GrowingFile,
  signal: AbortSignal,
  bar: ProgressBar,
): Promise<ArchiveResult> {
  return runThenRemoveSnapshot(deps.driver, backupId, deps.log, async () =>
    writeArchive({
      root: (await deps.driver.open(snapshot)).path,
      dest: join(dir, ARCHIVE_OBJECT),
      level: config.compression?.level,
      threads: config.compression?.threads,
      log: deps.log,
      onBytes: (bytes) => bar.advance(bytes),
      follow,
      signal,
      checkpoint: deps.checkpoint,
    }),
  );
}

/**
 * Step 7: the archive as it grows, as a multipart upload recorded in the backup's directory while it is open
 * (so the next run can abort it after a crash); `beforeComplete` runs once every part is up.
 */
function uploadFollowing(
  { deps, dir, ref, target }: BackupRun,
  dataBytes: number,
  follow: GrowingFile,
  bar: ProgressBar,
  beforeComplete: () => Promise<void>,
): Promise<ArchiveUpload> {
  return uploadArchive(
    deps.s3,
    target,
    { key: archiveKey(ref), source: follow, maxBytes: Math.ceil(archiveBoundFor(dataBytes) * 1.25) },
    deps.log,
    {
      started: (record) => writeProgressFile(dir, UPLOAD_RECORD, record),
      ended: () => unlink(join(dir, UPLOAD_RECORD)),
      partDone: (bytes) => bar.advance(bytes),
      checkpoint: deps.checkpoint,
      beforeComplete,
    },
  );
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
  run: BackupRun,
  done: {
    window: LockWindow;
    archive: ArchiveResult;
    upload: ArchiveUpload;
    uploadSeconds: number;
    messageId: string;
    removedLocal: string[];
    yielded?: YieldOutcome;
  },
): BackupResult {
  const { window, archive, yielded } = done;
  return {
    ok: true,
    backupId: run.backupId,
    cluster: run.config.cluster,
    host: run.config.host,
    bucket: run.target.bucket,
    archiveKey: archiveKey(run.ref),
    manifestKey: manifestKey(run.ref),
    messageId: done.messageId,
    server: { flavor: window.dialect.flavor, version: window.dialect.version },
    lockMode: window.plan.mode,
    lockChosenBy: window.choice.chosenBy,
    lockMethod: window.plan.method,
    lockMs: round(window.lockMs),
    acquireMs: round(window.acquireMs),
    snapshotMs: round(window.frozen.snapshotMs),
    archiveBytes: archive.bytes,
    rawBytes: archive.rawBytes,
    archiveSha256: archive.sha256,
    files: archive.files.length,
    directories: archive.directories,
    skipped: archive.skipped,
    tables: window.frozen.tables.length,
    archiveSeconds: round(archive.seconds),
    uploadSeconds: round(done.uploadSeconds),
    upload: done.upload,
    totalSeconds: round(secondsSince(run.started)),
    position: window.frozen.position,
    localArchive: join(run.dir, ARCHIVE_OBJECT),
    removedLocal: done.removedLocal,
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
