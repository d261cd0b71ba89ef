import { mkdir, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import type { S3Client } from "@aws-sdk/client-s3";
import type { Shell } from "zx";
import {
  VERIFY_DEFAULTS,
  archiveObjectsOf,
  boundArchiveObjects,
  type BackupManifest,
  type RestoreConfig,
  type Verdict,
  type VerifiedObject,
} from "../../contracts";
import { PipelineError, messageOf } from "../common/errors";
import type { Logger } from "../common/log";
import { s3Failure } from "../common/s3";
import type { ListedBackup } from "./list";
import {
  CheckFailure,
  ObjectProblem,
  currentObject,
  describeObject,
  judgeObjects,
  readManifest,
} from "./objects";
import { downloadArchive } from "./parallel";
import {
  mapSourcePath,
  removeReplicationState,
  rewriteRestoredBinlogIndex,
  scratchServerId,
} from "./scratch-server";

/**
 * `restore --target DIR` — the worst day: the chosen backup downloaded, hashed and extracted into DIR in one
 * pass (as the verifier does), every file checked against the manifest, the binlog index rewritten for DIR,
 * the source's replication connection removed, the tree given to the mysql user. The result holds the
 * server settings to start it with and the statements that make it a replica of the cluster from the
 * position captured under the lock.
 *
 * A verified backup is restored from exactly the objects its verdict is bound to (their versions where the
 * bucket versions objects, else their ETags; sizes and sha256 checked either way): anything else in S3 is
 * refused with both descriptions, because it is not what was proven.
 *
 * DIR stands for the snapshot's root on the source host (`snapshot.sourceRoot`): the datadir lands at the
 * same place below DIR as it was below that root (e.g. `DIR/data`). A non-empty DIR is refused; `--force`
 * empties it first (its contents, not the directory, which may be a mount point).
 */

/** What `restore --target` did, as `--json` prints it. */
export interface RestoreResult {
  backupId: string;
  host: string;
  verdict: Verdict | null;
  target: string;
  /** Where the datadir is below the target. */
  datadir: string;
  /** Options to start the restored server with (my.cnf `[mysqld]` lines, without the leading dashes). */
  serverOptions: string[];
  /** Statements that make the restored server a replica of the cluster; placeholders in angle brackets. */
  replicationStatements: string[];
  archiveBytes: number;
  seconds: number;
}

/** What `restore` runs on. */
export interface RestoreDeps {
  s3: S3Client;
  log: Logger;
  $: Shell;
  /**
   * The verifier's SIGTERM (its chain proof and drill restore with this machinery): cuts the download and
   * stops the server at once; what was found then says nothing about the backup or the archive.
   */
  signal?: AbortSignal;
}

/** Restores `chosen` into `target`; see the module comment. */
export async function restoreBackup(
  config: RestoreConfig,
  chosen: ListedBackup,
  target: string,
  force: boolean,
  deps: RestoreDeps,
): Promise<RestoreResult> {
  const started = performance.now();
  const { bucket } = config.restore;
  const log = deps.log.with({ backupId: chosen.backupId, host: chosen.host, target });
  if (chosen.verdict !== "verified") {
    log.warn(
      `backup ${chosen.backupId} has no "verified" verdict (${chosen.verdict ?? "not verified yet"})`,
      {
        hint: "restoring it anyway because it was named; check the restored server before using it",
      },
    );
  }
  const pins = verifiedPins(chosen, log);
  await prepareTarget(target, force);
  const refuse = (error: unknown) => rethrowForRestore(error, deps.s3, bucket, chosen);
  const manifest = await readChosenManifest(deps.s3, bucket, chosen, pins.manifest, refuse);
  const archive = archiveObjectsOf(manifest);
  log.info("downloading and extracting", {
    archiveKeys: archive.map((object) => object.key),
    bytes: manifest.archive.bytes,
    versions: pins.archive
      ? pins.archive.map((pin) => (pin ? describeObject(pin) : "?"))
      : "the current ones",
  });
  const { extraction } = await downloadArchive(deps.s3, bucket, manifest, target, {
    ...VERIFY_DEFAULTS.download,
    ...config.download,
    pins: pins.archive,
    signal: deps.signal,
  }).catch(refuse);
  await warnIfSuperseded(deps.s3, bucket, pins, log);
  try {
    judgeObjects(manifest, extraction);
  } catch (error) {
    if (!(error instanceof CheckFailure)) throw error;
    throw new PipelineError(
      "VerificationFailed",
      `backup ${chosen.backupId} does not match its manifest: ${error.message}`,
      `the files in ${target} cannot be used: restore another backup (--backup ID --force)`,
    );
  }
  const datadir = mapSourcePath(manifest.snapshot.sourceRoot, target, manifest.settings.datadir);
  const logBinIndex =
    manifest.settings.logBinIndex === null
      ? null
      : mapSourcePath(manifest.snapshot.sourceRoot, target, manifest.settings.logBinIndex);
  await rewriteRestoredBinlogIndex(manifest, { root: target, logBinIndex });
  const removed = await removeReplicationState(datadir);
  const user = config.mysqld?.user ?? VERIFY_DEFAULTS.mysqld.user;
  await deps.$`chown -R ${user}: ${target}`.catch((error: unknown) => {
    throw new PipelineError(
      "Config",
      `cannot give ${target} to the OS user "${user}": ${messageOf(error)}`,
      "check that mysqld.user exists on this host, then run chown -R yourself",
      { cause: error },
    );
  });
  log.info("restored", { datadir, files: extraction.files.size, removedReplicationState: removed });
  return restoredResultOf(
    manifest,
    chosen,
    target,
    extraction.objects.reduce((sum, object) => sum + object.bytes, 0),
    Math.round(performance.now() - started) / 1000,
  );
}

/** What a restore of `chosen` into `target` returns (the verifier's kept trees are described the same way). */
export function restoredResultOf(
  manifest: BackupManifest,
  chosen: ListedBackup,
  target: string,
  archiveBytes: number,
  seconds: number,
): RestoreResult {
  return {
    backupId: chosen.backupId,
    host: chosen.host,
    verdict: chosen.verdict,
    target,
    datadir: mapSourcePath(manifest.snapshot.sourceRoot, target, manifest.settings.datadir),
    serverOptions: restoredServerOptions(manifest, target),
    replicationStatements: replicationStatements(manifest),
    archiveBytes,
    seconds,
  };
}

/** The target must be empty; `force` empties it (not itself: it may be a mount point). */
async function prepareTarget(target: string, force: boolean): Promise<void> {
  await mkdir(target, { recursive: true, mode: 0o750 });
  const entries = await readdir(target);
  if (entries.length === 0) return;
  if (!force) {
    throw new PipelineError(
      "Usage",
      `the target ${target} is not empty (${entries.slice(0, 5).join(", ")}${entries.length > 5 ? ", …" : ""})`,
      "restore into an empty directory, or add --force to delete its contents first (stop any server using it)",
    );
  }
  for (const entry of entries) await rm(join(target, entry), { recursive: true, force: true });
}

/** The objects to fetch: the verified ones, when the chosen backup's verdict names them. */
interface Pins {
  manifest?: VerifiedObject;
  /** Every archive object, in order (the one of format 1, the chunks of format 2). */
  archive?: Array<VerifiedObject | null>;
}

/** The objects the chosen backup's verdict is bound to; none (with a warning) for a verdict without binding. */
function verifiedPins(chosen: ListedBackup, log: Logger): Pins {
  if (chosen.verdict !== "verified") return {};
  const archive = chosen.objects ? boundArchiveObjects(chosen.objects) : [];
  if (chosen.objects?.manifest && archive.length > 0 && archive.every((object) => object !== null))
    return { manifest: chosen.objects.manifest, archive };
  log.warn(`the verdict on ${chosen.backupId} predates object binding: it names no object version`, {
    hint: "restoring the current objects, checked against the manifest; nothing proves they are the ones verified",
  });
  return {};
}

/**
 * Where the bucket versions objects, a newer version of a verified object is tamper evidence (replicas can
 * only create objects): the verified version was restored, and the newer one is named for on-call.
 */
async function warnIfSuperseded(s3: S3Client, bucket: string, pins: Pins, log: Logger): Promise<void> {
  for (const pin of [pins.manifest, ...(pins.archive ?? [])]) {
    if (pin === undefined || pin === null || pin.versionId === null) continue;
    const current = await currentObject(s3, bucket, pin.key).catch(() => undefined);
    if (current === undefined || current?.versionId === pin.versionId) continue;
    log.warn(
      `s3://${bucket}/${pin.key} has a newer version than the verified one; restored the verified one`,
      {
        verified: describeObject(pin),
        current: current === null ? "deleted" : describeObject(current),
        hint: "someone wrote over a verified backup, which replicas cannot: find who in CloudTrail",
      },
    );
  }
}

/** The backup's manifest (the pinned version, when given), validated, and naming the backup it is listed as. */
async function readChosenManifest(
  s3: S3Client,
  bucket: string,
  chosen: ListedBackup,
  pin: VerifiedObject | undefined,
  refuse: (error: unknown) => Promise<never>,
): Promise<BackupManifest> {
  const { manifest } = await readManifest(s3, bucket, chosen.manifestKey, pin).catch(refuse);
  if (manifest.backupId !== chosen.backupId || manifest.host !== chosen.host) {
    throw new PipelineError(
      "VerificationFailed",
      `s3://${bucket}/${chosen.manifestKey} describes ${manifest.host}/${manifest.backupId}, not ${chosen.host}/${chosen.backupId}`,
      "pick another backup",
    );
  }
  return manifest;
}

/**
 * Rethrows an ObjectProblem as `restore` blames it: a manifest that is not one, or an archive whose size is
 * not the manifest's, condemns the backup; an object that is not the verified one is refused, naming both;
 * S3 failing, a download cut short, or an object gone since the listing, is this host's access to S3.
 */
async function rethrowForRestore(
  error: unknown,
  s3: S3Client,
  bucket: string,
  chosen: ListedBackup,
): Promise<never> {
  if (!(error instanceof ObjectProblem)) throw error;
  const why = messageOf(error.cause);
  switch (error.kind) {
    case "invalid":
      throw new PipelineError(
        "VerificationFailed",
        `${error.where} is not a valid manifest: ${why}`,
        "pick another backup",
      );
    case "size differs":
      throw new PipelineError(
        "VerificationFailed",
        `backup ${chosen.backupId} does not match its manifest: the archive ${error.where}: ${why}`,
        "pick another backup (--backup ID --force)",
      );
    case "not as verified":
      throw await notAsVerified(error, s3, bucket, chosen);
    default:
      throw s3Failure(`${error.object === "archive" ? "download" : "read"} ${error.where}`, error.cause);
  }
}

/** The refusal of an object that is not the verified one: what was verified, and what S3 holds now. */
async function notAsVerified(
  error: ObjectProblem,
  s3: S3Client,
  bucket: string,
  chosen: ListedBackup,
): Promise<PipelineError> {
  const verified =
    error.object === "archive"
      ? chosen.objects && boundArchiveObjects(chosen.objects)[error.index]
      : chosen.objects?.manifest;
  const key = verified?.key ?? error.where;
  const current = await currentObject(s3, bucket, key).then(
    (object) => (object === null ? "no object at all" : describeObject(object)),
    (failure: unknown) => `(cannot tell: ${messageOf(failure)})`,
  );
  const found = error.read ? `; it served ${describeObject(error.read)}` : "";
  return new PipelineError(
    "VerificationFailed",
    `backup ${chosen.backupId}: the ${error.object} ${error.where} is not the one verified on ${chosen.verifiedAt}: ` +
      `${messageOf(error.cause)}. Verified: ${verified ? describeObject(verified) : "?"}; S3 holds now: ${current}${found}`,
    "the verified object is gone or was written over (replicas cannot): find who in CloudTrail, and restore another backup (--backup ID --force)",
  );
}

/**
 * The statements that make the restored server a replica of the backup's source, from the position
 * captured under the lock. MariaDB: the slave position (a replica's backup) or the binlog position (a
 * primary's), then `MASTER_USE_GTID=slave_pos`. MySQL: the restored `gtid_executed` is the position, so
 * `SOURCE_AUTO_POSITION=1`. A backup taken without holding commits (manifest `positionAfter`) has no captured
 * position: the restored server's own recovered `gtid_slave_pos` is its position, so it is not overwritten.
 * Credentials are placeholders: no secret is ever printed.
 */
export function replicationStatements(manifest: BackupManifest): string[] {
  const source = manifest.position.source;
  const host = source?.host ?? "<source host>";
  const port = source?.port ?? 3306;
  const quote = (text: string) => `'${text.replace(/\\/g, "\\\\").replace(/'/g, "''")}'`;
  if (manifest.server.flavor === "mysql") {
    return [
      "STOP REPLICA",
      "RESET REPLICA ALL",
      `CHANGE REPLICATION SOURCE TO SOURCE_HOST=${quote(host)}, SOURCE_PORT=${port}, SOURCE_USER='<replication user>', SOURCE_PASSWORD='<replication password>', SOURCE_AUTO_POSITION=1`,
      "START REPLICA",
    ];
  }
  const gtid = manifest.position.gtidSlavePos || manifest.position.gtidBinlogPos || "";
  // Without a captured position a replica's restore keeps its recovered gtid_slave_pos, and a primary's
  // takes the GTIDs its recovered binary log holds.
  const setPosition =
    manifest.positionAfter === undefined
      ? [`SET GLOBAL gtid_slave_pos = ${quote(gtid)}`]
      : manifest.position.gtidSlavePos
        ? []
        : ["SET GLOBAL gtid_slave_pos = @@gtid_binlog_pos"];
  return [
    "STOP SLAVE",
    "RESET SLAVE ALL",
    ...setPosition,
    `CHANGE MASTER TO MASTER_HOST=${quote(host)}, MASTER_PORT=${port}, MASTER_USER='<replication user>', MASTER_PASSWORD='<replication password>', MASTER_USE_GTID=slave_pos`,
    "START SLAVE",
  ];
}

/** The server options a restored datadir must start with: the source's layout, mapped to `target`. */
export function restoredServerOptions(manifest: BackupManifest, target: string): string[] {
  const map = (path: string) => mapSourcePath(manifest.snapshot.sourceRoot, target, path);
  const { settings } = manifest;
  const options = [
    `datadir=${map(settings.datadir)}`,
    `innodb_page_size=${settings.innodbPageSize}`,
    `lower_case_table_names=${settings.lowerCaseTableNames}`,
    // Never the source's id (a replica ignores events with its own id); change it if another server has it.
    `server_id=${scratchServerId(manifest.server.serverId)}`,
  ];
  if (settings.logBinBasename !== null) options.push(`log_bin=${map(settings.logBinBasename)}`);
  if (settings.logBinIndex !== null) options.push(`log_bin_index=${map(settings.logBinIndex)}`);
  // Auto-positioning needs GTIDs on; MariaDB's GTIDs need no option.
  if (manifest.server.flavor === "mysql") options.push("gtid_mode=ON", "enforce_gtid_consistency=ON");
  // Starts without connecting anywhere: the operator points it at the cluster with the printed statements.
  options.push(manifest.server.flavor === "mysql" ? "skip_replica_start=ON" : "skip_slave_start=ON");
  return options;
}

/** What a person reads after a restore: how to start the server and rejoin the cluster. */
export function summarizeRestore(result: RestoreResult): string {
  return [
    `restored backup ${result.backupId} of ${result.host} (${result.verdict ?? "not verified"}) into ${result.target} in ${result.seconds}s`,
    "",
    "1. start the server with these settings ([mysqld] section of its my.cnf):",
    ...result.serverOptions.map((o) => `   ${o}`),
    "",
    "2. make it a replica of the cluster (fill in the replication account):",
    ...result.replicationStatements.map((s) => `   ${s};`),
  ].join("\n");
}
