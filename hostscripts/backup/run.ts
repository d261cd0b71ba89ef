import { access, mkdir, rm, unlink } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { S3Client } from "@aws-sdk/client-s3";
import type { SQSClient } from "@aws-sdk/client-sqs";
import {
  ARCHIVE_OBJECT,
  BACKUP_CREATED,
  MANIFEST_FORMAT_VERSION,
  MANIFEST_OBJECT,
  ReplicaMetric,
  archiveKey,
  hostPrefix,
  manifestKey,
  metric,
  newBackupId,
  parseBackupConfig,
  parseManifest,
  type BackupConfig,
  type BackupCreatedMessage,
  type BackupManifest,
  type BackupRef,
  type CapturedPosition,
  type ManifestTable,
  type MetricDatum,
} from "../../contracts";
import { GrowingFile, writeArchive, type ArchiveResult } from "./archive";
import { createAwsClients } from "../common/aws";
import type { CommandOutcome, Subcommand } from "../common/command";
import {
  detectDialect,
  readServerFacts,
  readTableInventory,
  type Dialect,
  type ServerFacts,
} from "../common/dialect";
import { ExitCode, PipelineError, messageOf } from "../common/errors";
import { sessionOf, withLock, type SqlSession } from "./lock";
import type { Logger } from "../common/log";
import { sinkFromConfig, type MetricsSink } from "../common/metrics";
import { connect, readOptionFile } from "../common/mysql";
import { checkDiskSpace } from "./diskspace";
import { acquireRunLock } from "./runlock";
import { OUTBOX, UPLOAD_RECORD, repairAfterCrash, writeDurably, writeProgressFile } from "./repair";
import { logProgress, ttyProgress, type ProgressView } from "../common/progress";
import { pruneLocalBackups } from "./retention";
import { driverFor, runCommand, type Snapshot, type SnapshotDriver } from "./snapshot";
import { yieldToDatabase, type YieldOutcome } from "./priority";
import { pauseAt } from "../common/checkpoint";
import {
  sendBackupCreated,
  DEFAULT_PART_SIZE_MIB,
  archiveBoundFor,
  uploadArchive,
  uploadManifest,
  type ArchiveUpload,
  type UploadTarget,
} from "./upload";

/**
 * `mysql-backup backup` (DESIGN §1 steps 1–9) on a replica: prove the server's files are on the snapshotted
 * volume, lock, capture the position and snapshot, unlock — within a hard timeout —, archive the snapshot,
 * remove it, upload the archive and then the manifest, send `backup.created`, keep the newest local backups.
 * Metrics are emitted on every run, success or failure.
 */

/** A client session that can be closed; the lock window uses two. */
export type ClosableSession = SqlSession & { close(): Promise<void> };

/** Everything `runBackup` touches outside itself, so a test can run it for real or with a fake part. */
export interface BackupDeps {
  /** Opens a new session on the local server (called twice: lock and watchdog). */
  openSession(): Promise<ClosableSession>;
  /** The snapshot driver, built over the injected command runner. */
  driver: SnapshotDriver;
  s3: S3Client;
  sqs: SQSClient;
  metrics: MetricsSink;
  log: Logger;
  /** Wall clock, for the backup id and timestamps. Defaults to `new Date()`. */
  clock?: () => Date;
  /** How archive and upload progress is shown. Defaults to a `progress` log line every 30 s. */
  progress?: ProgressView;
  /**
   * Called once the lock is released, before the archive: the CLI lowers its own priority there
   * (`yieldToDatabase`). Absent when a test runs the backup inside its own process.
   */
  afterUnlock?: () => Promise<YieldOutcome>;
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

/** What the lock window hands back: the position, the inventory and the snapshot, all taken together. */
interface Frozen {
  position: CapturedPosition;
  tables: ManifestTable[];
  snapshot: Snapshot;
  snapshotMs: number;
}

const DEFAULT_LOCK_TIMEOUT_MS = 5000;
/** The run lock in `localDir`: one backup at a time per host. */
export const RUN_LOCK_FILE = ".mysql-backup.lock";
const DEFAULT_KEEP_LOCAL = 2;

/**
 * Runs one backup: takes the run lock, repairs what a crashed run left, then backs up. Throws AlreadyRunning
 * without a metric when another live run holds the lock (that run reports for itself), and any other
 * failure as a PipelineError after emitting BackupFailed with its reason.
 */
export async function runBackup(config: BackupConfig, deps: BackupDeps): Promise<BackupResult> {
  const clock = deps.clock ?? (() => new Date());
  const startedAt = clock();
  const backupId = newBackupId(startedAt);
  const log = deps.log.with({ backupId, cluster: config.cluster, host: config.host });
  const started = performance.now();
  await mkdir(config.localDir, { recursive: true, mode: 0o700 });
  const runLock = await acquireRunLock(join(config.localDir, RUN_LOCK_FILE));
  if (runLock.tookOverFrom)
    log.warn("took over the run lock of a run that died", { ...runLock.tookOverFrom });
  try {
    await pauseAt("started");
    await repairAfterCrash({
      localDir: config.localDir,
      hostPrefix: hostPrefix(config.s3.prefix ?? "backups", config.cluster, config.host),
      bucket: config.s3.bucket,
      target: uploadTargetOf(config),
      queueUrl: config.sqs.queueUrl,
      s3: deps.s3,
      sqs: deps.sqs,
      log,
    });
    const result = await takeBackup(config, { ...deps, log, clock }, backupId, startedAt, started);
    await emit(
      deps.metrics,
      log,
      [
        [ReplicaMetric.BackupSucceeded, 1],
        [ReplicaMetric.LockMilliseconds, result.lockMs],
        [ReplicaMetric.BackupSeconds, result.totalSeconds],
        [ReplicaMetric.ArchiveBytes, result.archiveBytes],
      ],
      config,
      clock(),
    );
    log.info("backup complete", {
      lockMs: result.lockMs,
      archiveBytes: result.archiveBytes,
      totalSeconds: result.totalSeconds,
    });
    return result;
  } catch (e) {
    const error = onCall(e, backupId, config.host);
    await emit(deps.metrics, log, [[ReplicaMetric.BackupFailed, 1]], config, clock(), error.reason);
    throw error;
  } finally {
    await runLock.release();
  }
}

async function takeBackup(
  config: BackupConfig,
  deps: BackupDeps & { clock: () => Date },
  backupId: string,
  startedAt: Date,
  started: number,
): Promise<BackupResult> {
  const { driver, log } = deps;
  const localDir = join(config.localDir, backupId);
  const archivePath = join(localDir, ARCHIVE_OBJECT);

  const window = await freeze(config, deps, backupId, localDir);
  const yielded = await deps.afterUnlock?.();
  await pauseAt("snapshot");
  const progress = deps.progress ?? logProgress(log);
  const ref: BackupRef = {
    prefix: config.s3.prefix ?? "backups",
    cluster: config.cluster,
    host: config.host,
    backupId,
  };
  const target = uploadTargetOf(config);
  // Steps 5–7 run together: the upload follows the archive as it is written, and the snapshot goes as soon as
  // the archive is complete. Whichever fails first stops the other; its error is the one reported.
  const follow = new GrowingFile();
  const stopArchive = new AbortController();
  const archiveBar = progress.start("archive", window.dataBytes);
  const uploadBar = progress.start("upload", window.dataBytes);
  const archiving = runThenRemoveSnapshot(driver, backupId, log, async () =>
    writeArchive({
      root: (await driver.open(window.frozen.snapshot)).path,
      dest: archivePath,
      level: config.compression?.level ?? 1,
      threads: config.compression?.threads ?? 0,
      log,
      onBytes: (bytes) => archiveBar.advance(bytes),
      follow,
      signal: stopArchive.signal,
    }),
  )
    .catch((e: unknown) => {
      follow.failed(e instanceof Error ? e : new Error(messageOf(e)));
      throw e;
    })
    .finally(() => archiveBar.end());
  const uploadStarted = performance.now();
  const uploading = uploadArchive(
    deps.s3,
    target,
    { key: archiveKey(ref), source: follow, maxBytes: Math.ceil(archiveBoundFor(window.dataBytes) * 1.25) },
    log,
    {
      started: (record) => writeProgressFile(localDir, UPLOAD_RECORD, record),
      ended: () => unlink(join(localDir, UPLOAD_RECORD)),
      partDone: (bytes) => uploadBar.advance(bytes),
    },
  )
    .catch((e: unknown) => {
      // A failed archive fails the follower first (synchronously), so this is the upload's own failure.
      if (!follow.hasFailed) stopArchive.abort(e);
      throw e;
    })
    .finally(() => uploadBar.end());
  const [archived, uploaded] = await Promise.allSettled([archiving, uploading]);
  if (archived.status === "rejected" || uploaded.status === "rejected") {
    await rm(localDir, { recursive: true, force: true });
    throw stopArchive.signal.aborted || archived.status === "fulfilled"
      ? (uploaded as PromiseRejectedResult).reason
      : archived.reason;
  }
  const archive: ArchiveResult = archived.value;
  const upload: ArchiveUpload = uploaded.value;
  log.info("archive written and uploaded, snapshot removed", {
    archiveBytes: archive.bytes,
    rawBytes: archive.rawBytes,
    files: archive.files.length,
    archiveSeconds: archive.seconds,
    parts: upload.parts,
  });
  const manifest = buildManifest(config, {
    backupId,
    startedAt,
    completedAt: deps.clock(),
    facts: window.facts,
    dialect: window.dialect,
    lockMs: window.lockMs,
    frozen: window.frozen,
    sourceRoot: driver.sourceRoot,
    archive,
    archiveKey: archiveKey(ref),
  });
  const message: BackupCreatedMessage = {
    type: BACKUP_CREATED,
    version: 1,
    bucket: target.bucket,
    manifestKey: manifestKey(ref),
    backupId,
    cluster: config.cluster,
    host: config.host,
    createdAt: manifest.completedAt,
    archiveSha256: archive.sha256,
  };
  await writeDurably(join(localDir, MANIFEST_OBJECT), JSON.stringify(manifest, null, 2) + "\n");
  // The outbox before the manifest goes up: from here on the backup must be completed and announced, by this
  // run or, after a crash, by the next one.
  await writeProgressFile(localDir, OUTBOX, message);
  await uploadManifest(deps.s3, target, manifestKey(ref), manifest, log);
  const uploadSeconds = (performance.now() - uploadStarted) / 1000;
  log.info("archive and manifest uploaded", {
    bucket: target.bucket,
    manifestKey: manifestKey(ref),
    uploadSeconds,
  });

  await pauseAt("signal");
  const messageId = await sendBackupCreated(deps.sqs, config.sqs.queueUrl, message, log, target.retry);
  await unlink(join(localDir, OUTBOX));
  const removedLocal = await pruneLocalBackups(
    config.localDir,
    config.keepLocal ?? DEFAULT_KEEP_LOCAL,
    log,
  ).catch((e: unknown) => {
    log.warn("could not prune old local backups", { error: messageOf(e), localDir: config.localDir });
    return [];
  });

  return {
    ok: true,
    backupId,
    cluster: config.cluster,
    host: config.host,
    bucket: target.bucket,
    archiveKey: archiveKey(ref),
    manifestKey: manifestKey(ref),
    messageId,
    server: { flavor: window.dialect.flavor, version: window.dialect.version },
    lockMethod: window.dialect.lockMethod,
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
    uploadSeconds: round(uploadSeconds),
    upload,
    totalSeconds: round((performance.now() - started) / 1000),
    position: window.frozen.position,
    localArchive: archivePath,
    removedLocal,
    ...(yielded ? { priorityAfterLock: yielded } : {}),
  };
}

/**
 * Steps 1–4: read the server and prove its paths (before any lock), then lock, capture and snapshot, unlock.
 * Both sessions are opened before locking, so the watchdog never needs a new connection while the server is
 * locked; both are closed as soon as the lock is released.
 */
async function freeze(
  config: BackupConfig,
  deps: BackupDeps,
  backupId: string,
  localDir: string,
): Promise<{
  facts: ServerFacts;
  dialect: Dialect;
  lockMs: number;
  acquireMs: number;
  frozen: Frozen;
  /** Bytes of data below the source root, measured before the lock (the archive bar's total). */
  dataBytes: number;
}> {
  const { driver, log } = deps;
  const session = await deps.openSession();
  const watchdog = await deps.openSession().catch(async (e: unknown) => {
    await session.close();
    throw e;
  });
  try {
    const facts = await readServerFacts(session.query);
    const dialect = await detectDialect(facts.versionString, session.query);
    await driver.prove({
      datadir: facts.settings.datadir,
      logBinBasename: facts.settings.logBinBasename,
      innodbLogDir: facts.innodbLogDir,
      innodbUndoDir: facts.innodbUndoDir,
      innodbDataHomeDir: facts.innodbDataHomeDir,
    });
    const stale = await driver.removeStale();
    if (stale.length > 0) log.warn("removed snapshots left behind by an earlier run", { stale });
    const space = await checkDiskSpace(config.localDir, driver.sourceRoot, config.diskSpace);
    log.info("enough free space to archive", { ...space });
    await mkdir(localDir, { recursive: true, mode: 0o700 });
    await driver.flush?.();
    log.info("locking", {
      method: dialect.lockMethod,
      ...(dialect.lockReason ? { why: dialect.lockReason } : {}),
      server: facts.versionString,
      timeoutMs: lockTimeout(config),
    });

    const window = await runThenRemoveSnapshotOnFailure(driver, backupId, log, () =>
      withLock({ session, watchdog, dialect, timeoutMs: lockTimeout(config), log }, (signal, step) =>
        frozenState(session, dialect, driver, backupId, signal, step),
      ),
    );
    log.info("unlocked", {
      lockMs: round(window.lockMs),
      acquireMs: round(window.acquireMs),
      snapshotMs: round(window.value.snapshotMs),
    });
    return {
      facts,
      dialect,
      lockMs: window.lockMs,
      acquireMs: window.acquireMs,
      frozen: window.value,
      dataBytes: space.dataBytes,
    };
  } catch (e) {
    await rm(localDir, { recursive: true, force: true });
    throw e;
  } finally {
    await Promise.all([session.close(), watchdog.close()]);
  }
}

/**
 * Under the lock: the position and the inventory (on the lock session) while the snapshot command runs,
 * because they do not depend on each other and every millisecond here blocks replication.
 */
async function frozenState(
  session: SqlSession,
  dialect: Dialect,
  driver: SnapshotDriver,
  backupId: string,
  signal: AbortSignal,
  step: (s: string) => void,
): Promise<Frozen> {
  await pauseAt("locked");
  const pending = new Set<string>();
  const track = async <T>(what: string, task: () => Promise<T>): Promise<T> => {
    pending.add(what);
    step([...pending].join(" and "));
    try {
      return await task();
    } finally {
      pending.delete(what);
      step([...pending].join(" and "));
    }
  };
  const captured = track("capturing the position and the table inventory", async () => ({
    position: await dialect.capturePosition(session.query),
    tables: await readTableInventory(session.query),
  }));
  const snapshotted = track(`the ${driver.name} snapshot`, async () => {
    const t0 = performance.now();
    const snapshot = await driver.create(backupId, signal);
    return { snapshot, snapshotMs: performance.now() - t0 };
  });
  const [c, s] = await Promise.allSettled([captured, snapshotted]);
  if (c.status === "rejected") throw c.reason;
  if (s.status === "rejected") throw s.reason;
  return { ...c.value, ...s.value };
}

/** Runs `work`, then removes the backup's snapshot whatever happened; a removal failure never hides the first error. */
async function runThenRemoveSnapshot<T>(
  driver: SnapshotDriver,
  backupId: string,
  log: Logger,
  work: () => Promise<T>,
): Promise<T> {
  let value: T;
  try {
    value = await work();
  } catch (e) {
    await removeSnapshotQuietly(driver, backupId, log);
    throw e;
  }
  await driver.remove(backupId);
  return value;
}

/** Runs `work`; if it fails, removes whatever snapshot it may have left (also a partial one). */
async function runThenRemoveSnapshotOnFailure<T>(
  driver: SnapshotDriver,
  backupId: string,
  log: Logger,
  work: () => Promise<T>,
): Promise<T> {
  try {
    return await work();
  } catch (e) {
    await removeSnapshotQuietly(driver, backupId, log);
    throw e;
  }
}

async function removeSnapshotQuietly(driver: SnapshotDriver, backupId: string, log: Logger): Promise<void> {
  try {
    await driver.remove(backupId);
  } catch (removal) {
    log.error("could not remove the snapshot after a failure; the next run removes it", {
      error: messageOf(removal),
    });
  }
}

/** The manifest of a finished archive, validated against its schema (a bug here must fail, not upload). */
export function buildManifest(
  config: BackupConfig,
  parts: {
    backupId: string;
    startedAt: Date;
    completedAt: Date;
    facts: ServerFacts;
    dialect: Dialect;
    lockMs: number;
    frozen: Pick<Frozen, "position" | "tables" | "snapshot">;
    sourceRoot: string;
    archive: ArchiveResult;
    archiveKey: string;
  },
): BackupManifest {
  return parseManifest({
    formatVersion: MANIFEST_FORMAT_VERSION,
    backupId: parts.backupId,
    cluster: config.cluster,
    host: config.host,
    startedAt: parts.startedAt.toISOString(),
    completedAt: parts.completedAt.toISOString(),
    server: { flavor: parts.dialect.flavor, version: parts.dialect.version, serverId: parts.facts.serverId },
    settings: parts.facts.settings,
    position: parts.frozen.position,
    lock: { method: parts.dialect.lockMethod, ms: round(parts.lockMs) },
    snapshot: {
      driver: config.snapshot.driver,
      name: parts.frozen.snapshot.name,
      sourceRoot: parts.sourceRoot,
    },
    archive: {
      key: parts.archiveKey,
      bytes: parts.archive.bytes,
      sha256: parts.archive.sha256,
      compression: "zstd",
      format: "tar",
      rawBytes: parts.archive.rawBytes,
    },
    files: parts.archive.files,
    tables: parts.frozen.tables,
  });
}

/** How this host writes objects, from config `s3`. */
function uploadTargetOf(config: BackupConfig): UploadTarget {
  return {
    bucket: config.s3.bucket,
    kmsKeyId: config.s3.kmsKeyId,
    partSizeMiB: config.s3.partSizeMiB ?? DEFAULT_PART_SIZE_MIB,
    queueSize: config.s3.queueSize ?? 4,
  };
}

function lockTimeout(config: BackupConfig): number {
  return config.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS;
}

/**
 * Each datum twice: per host, and per cluster (what the cluster-wide alarms watch); a failure a third
 * time, per cluster and reason, for the dashboard.
 */
async function emit(
  sink: MetricsSink,
  log: Logger,
  values: Array<[MetricDatum["name"], number]>,
  config: BackupConfig,
  now: Date,
  reason?: string,
): Promise<void> {
  const data = values.flatMap(([name, value]) => [
    metric(name, value, { Cluster: config.cluster, Host: config.host }, now),
    metric(name, value, { Cluster: config.cluster }, now),
    ...(reason === undefined ? [] : [metric(name, value, { Cluster: config.cluster, Reason: reason }, now)]),
  ]);
  try {
    await sink.put(data);
  } catch (e) {
    // A lost metric must not turn a good backup into a failed one; the missing-backup alarm covers it.
    log.error("could not emit metrics", { error: messageOf(e), metrics: values.map(([name]) => name) });
  }
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

function round(value: number): number {
  return Math.round(value * 1000) / 1000;
}

/** A few lines for a person. */
export function summarize(r: BackupResult): string {
  const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
  const gtid = r.position.gtidSlavePos ?? r.position.gtidExecuted ?? r.position.gtidBinlogPos ?? "(none)";
  return [
    `backup ${r.backupId} of ${r.cluster}/${r.host} complete (${r.server.flavor} ${r.server.version})`,
    `  lock     ${r.lockMs.toFixed(1)} ms (${r.lockMethod}), snapshot ${r.snapshotMs.toFixed(1)} ms, GTID ${gtid}`,
    `  archive  ${mb(r.rawBytes)} → ${mb(r.archiveBytes)} in ${r.archiveSeconds.toFixed(1)} s, ${r.files} files, ${r.tables} tables`,
    `  upload   s3://${r.bucket}/${r.manifestKey} in ${r.uploadSeconds.toFixed(1)} s; total ${r.totalSeconds.toFixed(1)} s`,
  ].join("\n");
}

/** The production dependencies of a config: option-file sessions, the configured driver, AWS and the sink. */
export async function backupDeps(config: BackupConfig, log: Logger): Promise<BackupDeps> {
  await access(config.mysql.optionFile).catch((e: unknown) => {
    throw new PipelineError(
      "Config",
      `cannot read the MySQL option file ${config.mysql.optionFile}: ${messageOf(e)}`,
      "check mysql.optionFile in the config",
      { cause: e },
    );
  });
  const options = await readOptionFile(config.mysql.optionFile);
  const aws = await createAwsClients(config.aws);
  return {
    async openSession() {
      const conn = await connect(options, `the local server (${config.host})`);
      // A session the watchdog killed reports it as an error event; unheard, that would end the process.
      conn.on("error", (e: Error) =>
        log.warn("MySQL session ended", { connectionId: conn.threadId, error: e.message }),
      );
      return {
        ...sessionOf(conn),
        async close() {
          await Promise.race([conn.end().catch(() => undefined), sleep(2000, undefined, { ref: false })]);
          conn.destroy();
        },
      };
    },
    driver: driverFor(config.snapshot, runCommand),
    s3: aws.s3,
    sqs: aws.sqs,
    metrics: sinkFromConfig(config.metrics, aws.cloudwatch),
    log,
    progress: process.stderr.isTTY ? ttyProgress(process.stderr) : logProgress(log),
  };
}

/** `mysql-backup backup --config FILE [--json]`. */
export const backupCommand: Subcommand<BackupConfig> = {
  name: "backup",
  describe: "snapshot this replica, archive it, upload it to S3 and signal the verifiers",
  parseConfig: parseBackupConfig,
  async run(config, _flags, log): Promise<CommandOutcome> {
    const deps = await backupDeps(config, log);
    const result = await runBackup(config, { ...deps, afterUnlock: () => yieldToDatabase(log) });
    return { exitCode: ExitCode.Ok, result, summary: summarize(result) };
  },
};
