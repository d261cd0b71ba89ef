import { writeFile } from "node:fs/promises";
import {
  parseBackupConfig,
  parseRestoreConfig,
  parseVerifyConfig,
  type AwsSettings,
  type BackupConfig,
  type RestoreConfig,
  type VerifyConfig,
} from "../contracts/config";
import { parseStatusConfig, type StatusConfig } from "../contracts/status";
import { LAB_REGION } from "./emulator";
import { BACKUP_USER } from "./replication";

/**
 * The files the host scripts read in the lab: the backup user's option file (the only place its password
 * lives) and the `--config` files of `mysql-backup backup` and `verify`, validated against the contracts
 * before they are written, so a lab never hands out a config the scripts would reject.
 */

/** The lab's cluster name, as a replica agent would be configured. */
export const LAB_CLUSTER = "lab";
/** The lab replica's host name in backup keys and metrics. */
export const LAB_HOST = "replica1";

/** Everything the configs are made of. */
export interface LabConfigInputs {
  replicaSocket: string;
  backupPassword: string;
  backupOptionFile: string;
  subvolume: string;
  snapshotDir: string;
  backupsDir: string;
  scratchDir: string;
  bucket: string;
  queueUrl: string;
  endpoint: string;
  awsCredentialsFile: string;
  metricsPath: string;
  /** The binlog archiver's state and spool. */
  binlogStateDir: string;
}

/** Writes the backup user's `[client]` option file, mode 0600. */
export async function writeBackupOptionFile(inputs: LabConfigInputs): Promise<void> {
  const ini = `[client]\nuser=${BACKUP_USER}\npassword=${inputs.backupPassword}\nsocket=${inputs.replicaSocket}\n`;
  await writeFile(inputs.backupOptionFile, ini, { mode: 0o600, flag: "wx" });
}

function awsSettings(inputs: LabConfigInputs): AwsSettings {
  return {
    region: LAB_REGION,
    endpoint: inputs.endpoint,
    forcePathStyle: true,
    credentialsFile: inputs.awsCredentialsFile,
  };
}

/** The `mysql-backup backup` config of the lab replica. */
export function backupConfig(inputs: LabConfigInputs): BackupConfig {
  return parseBackupConfig({
    cluster: LAB_CLUSTER,
    host: LAB_HOST,
    mysql: { optionFile: inputs.backupOptionFile },
    snapshot: { driver: "btrfs", subvolume: inputs.subvolume, snapshotDir: inputs.snapshotDir },
    localDir: inputs.backupsDir,
    keepLocal: 2,
    compression: { chunkMiB: LAB_CHUNK_MIB },
    // fauxqs 1.9 caps request bodies at 11 MiB, so parts stay below it (S3's minimum is 5 MiB).
    s3: { bucket: inputs.bucket, prefix: "backups", partSizeMiB: LAB_PART_SIZE_MIB },
    sqs: { queueUrl: inputs.queueUrl },
    aws: awsSettings(inputs),
    metrics: { sink: "file", path: inputs.metricsPath },
    // The emulator takes request bodies up to 11 MiB: segments are cut at 4 MiB (plus one transaction).
    // Every segment is announced to the lab's verifier, as in production (issue 14).
    binlog: {
      stateDir: inputs.binlogStateDir,
      segmentMaxMiB: 4,
      rpoSeconds: LAB_RPO_SECONDS,
      announce: true,
    },
  });
}

/** The RPO the lab's archiver keeps (the product's default). */
export const LAB_RPO_SECONDS = 10;

/** Multipart part size the lab's emulator accepts. */
export const LAB_PART_SIZE_MIB = 8;

/**
 * Archive chunks of the lab: small, so its datasets of a few hundred MB make archives of several chunks with
 * files cut across them, as production's terabytes do with 1 GiB chunks, and every test that restores one
 * unpacks chunks in parallel. The benchmarks set their own.
 */
export const LAB_CHUNK_MIB = 64;

/** The `mysql-backup verify` config of a lab verifier. */
export function verifyConfig(inputs: LabConfigInputs): VerifyConfig {
  return parseVerifyConfig({
    sqs: { queueUrl: inputs.queueUrl, waitTimeSeconds: 1, visibilityTimeoutSeconds: 120 },
    scratchDir: inputs.scratchDir,
    mysqld: { user: "mysql" },
    aws: awsSettings(inputs),
    metrics: { sink: "file", path: inputs.metricsPath },
  });
}

/** The `mysql-backup status` config of the lab: its bucket, and the lab cluster with its replica expected. */
export function statusConfig(inputs: LabConfigInputs): StatusConfig {
  return parseStatusConfig({
    s3: { bucket: inputs.bucket, prefix: "backups" },
    aws: awsSettings(inputs),
    clusters: [{ name: LAB_CLUSTER, hosts: [LAB_HOST] }],
  });
}

/** The `mysql-backup restore` config of the lab: the verify config with the lab cluster's backups named. */
export function restoreConfig(inputs: LabConfigInputs): RestoreConfig {
  return parseRestoreConfig({
    ...verifyConfig(inputs),
    restore: { bucket: inputs.bucket, prefix: "backups", cluster: LAB_CLUSTER },
  });
}

/** Writes a config as pretty JSON (no secret is in it: those are referenced by path). */
export async function writeJson(path: string, value: unknown): Promise<void> {
  await writeFile(path, `${JSON.stringify(value, null, 2)}\n`, { mode: 0o644 });
}
