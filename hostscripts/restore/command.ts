import { mkdir, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { GetObjectCommand, ListObjectsV2Command, type S3Client } from "@aws-sdk/client-s3";
import { $, type Shell } from "zx";
import {
  ARCHIVE_OBJECT,
  MANIFEST_OBJECT,
  VERIFICATION_OBJECT,
  clusterPrefix,
  manifestKey,
  parseManifest,
  parseRestoreConfig,
  type BackupManifest,
  type BackupRef,
  type RestoreConfig,
  type RestoreSource,
  type Verdict,
} from "../../contracts";
import { createAwsClients } from "../common/aws";
import type { CommandOutcome, Subcommand } from "../common/command";
import { ExitCode, PipelineError, messageOf } from "../common/errors";
import { DEFAULT_DOWNLOAD, openRanged } from "./download";
import { extractArchive } from "./extract";
import type { Logger } from "../common/log";
import { CheckFailure, judgeObjects } from "./objects";
import { describeDrift, readReport } from "./verdicts";
import {
  mapSourcePath,
  removeReplicationState,
  rewriteRestoredBinlogIndex,
  scratchServerId,
} from "./scratch-server";

/**
 * `mysql-backup restore` — the worst day. `restore list` shows a cluster's backups, newest first, with the
 * verifier's verdict on each. `restore --target DIR [--backup ID] [--force]` restores the newest verified
 * backup (or the named one) into DIR: download, sha256 and extract in one pass (as the verifier does), every
 * file checked against the manifest, the binlog index rewritten for DIR, the source's replication
 * connection removed, the tree given to the mysql user. It then prints the server settings to start it with
 * and the statement that makes it a replica of the cluster from the position captured under the lock.
 *
 * DIR stands for the snapshot's root on the source host (`snapshot.sourceRoot`): the datadir lands at the
 * same place below DIR as it was below that root (e.g. `DIR/data`). A non-empty DIR is refused; `--force`
 * empties it first (its contents, not the directory, which may be a mount point).
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
}

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
}

/** The parsed arguments after `restore`. */
export type RestoreAction =
  { action: "list" } | { action: "restore"; target: string; backupId: string | null; force: boolean };

const usage =
  "usage: mysql-backup restore --config FILE list\n" +
  "       mysql-backup restore --config FILE --target DIR [--backup BACKUP_ID] [--force]";

/** Reads `restore`'s own arguments (`flags.rest`). */
export function parseRestoreArgs(rest: string[]): RestoreAction {
  if (rest.length === 1 && rest[0] === "list") return { action: "list" };
  let target: string | null = null;
  let backupId: string | null = null;
  let force = false;
  for (let i = 0; i < rest.length; i++) {
    const [flag, inline] = rest[i].split(/=(.*)/s, 2);
    const value = () => inline ?? rest[++i];
    if (flag === "--target") target = value() ?? null;
    else if (flag === "--backup") backupId = value() ?? null;
    else if (flag === "--force" && inline === undefined) force = true;
    else throw new PipelineError("Usage", `restore: unexpected argument "${rest[i]}"`, usage);
  }
  if (target === null || !target.startsWith("/")) {
    throw new PipelineError("Usage", "restore needs --target DIR (an absolute path) or `list`", usage);
  }
  return { action: "restore", target, backupId, force };
}

/** Every backup of the cluster (all hosts), newest first, with its verdict. */
export async function listBackups(s3: S3Client, source: RestoreSource): Promise<ListedBackup[]> {
  const prefix = clusterPrefix(source.prefix ?? "backups", source.cluster);
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
    if (!objects.has(ARCHIVE_OBJECT) && !objects.has(MANIFEST_OBJECT)) continue;
    const ref: BackupRef = { prefix: source.prefix ?? "backups", cluster: source.cluster, host, backupId };
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

/**
 * The statements that make the restored server a replica of the backup's source, from the position
 * captured under the lock. MariaDB: the slave position (a replica's backup) or the binlog position (a
 * primary's), then `MASTER_USE_GTID=slave_pos`. MySQL: the restored `gtid_executed` is the position, so
 * `SOURCE_AUTO_POSITION=1`. Credentials are placeholders: no secret is ever printed.
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
  return [
    "STOP SLAVE",
    "RESET SLAVE ALL",
    `SET GLOBAL gtid_slave_pos = ${quote(gtid)}`,
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
  await prepareTarget(target, force);
  const manifest = await readManifest(deps.s3, bucket, chosen);
  log.info("downloading and extracting", { archiveKey: manifest.archive.key, bytes: manifest.archive.bytes });
  const download = await s3Call(`download s3://${bucket}/${manifest.archive.key}`, () =>
    openRanged(deps.s3, bucket, manifest.archive.key, { ...DEFAULT_DOWNLOAD, ...config.download }),
  );
  const extraction = await extractArchive(download.body, target);
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
  const user = config.mysqld?.user ?? "mysql";
  await deps.$`chown -R ${user}: ${target}`.catch((error: unknown) => {
    throw new PipelineError(
      "Config",
      `cannot give ${target} to the OS user "${user}": ${messageOf(error)}`,
      "check that mysqld.user exists on this host, then run chown -R yourself",
      { cause: error },
    );
  });
  log.info("restored", { datadir, files: extraction.files.size, removedReplicationState: removed });
  return {
    backupId: chosen.backupId,
    host: chosen.host,
    verdict: chosen.verdict,
    target,
    datadir,
    serverOptions: restoredServerOptions(manifest, target),
    replicationStatements: replicationStatements(manifest),
    archiveBytes: extraction.archive.bytes,
    seconds: Math.round(performance.now() - started) / 1000,
  };
}

/** The backup's manifest, validated, and naming the backup it is listed as. */
async function readManifest(s3: S3Client, bucket: string, chosen: ListedBackup): Promise<BackupManifest> {
  const where = `s3://${bucket}/${chosen.manifestKey}`;
  const text = await s3Call(`read ${where}`, async () => {
    const response = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: chosen.manifestKey }));
    return (await response.Body?.transformToString()) ?? "";
  });
  let manifest: BackupManifest;
  try {
    manifest = parseManifest(JSON.parse(text));
  } catch (error) {
    throw new PipelineError(
      "VerificationFailed",
      `${where} is not a valid manifest: ${messageOf(error)}`,
      "pick another backup",
    );
  }
  if (manifest.backupId !== chosen.backupId || manifest.host !== chosen.host) {
    throw new PipelineError(
      "VerificationFailed",
      `${where} describes ${manifest.host}/${manifest.backupId}, not ${chosen.host}/${chosen.backupId}`,
      "pick another backup",
    );
  }
  return manifest;
}

async function s3Call<T>(what: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    throw new PipelineError(
      "VerifierInfrastructure",
      `cannot ${what}: ${messageOf(error)}`,
      "check this host's access to S3 (network, IAM, KMS)",
      {
        cause: error,
      },
    );
  }
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

/** `mysql-backup restore`. */
export const restoreCommand: Subcommand<RestoreConfig> = {
  name: "restore",
  describe:
    "list a cluster's backups, or restore one into a datadir (`restore list`, `restore --target DIR`)",
  parseConfig: parseRestoreConfig,
  ownFlags: ["--target", "--backup", "--force"],
  async run(config, flags, log): Promise<CommandOutcome> {
    const action = parseRestoreArgs(flags.rest);
    const clients = await createAwsClients(config.aws);
    try {
      const backups = await listBackups(clients.s3, config.restore);
      if (action.action === "list") {
        return {
          exitCode: ExitCode.Ok,
          result: backups,
          summary: summarizeList(config.restore.cluster, backups),
        };
      }
      const chosen = chooseBackup(backups, action.backupId, config.restore.cluster);
      const result = await restoreBackup(config, chosen, action.target, action.force, {
        s3: clients.s3,
        log,
        $: $({ quiet: true }),
      });
      return { exitCode: ExitCode.Ok, result, summary: summarizeRestore(result) };
    } finally {
      clients.s3.destroy();
      clients.sqs.destroy();
      clients.cloudwatch.destroy();
    }
  },
};
