/**
 * What the lab's backup tests share: the backup's config and its own dependencies as the CLI builds them, the
 * manifest a backup stored, and the sequence number of the lab's one GTID domain.
 */
import { readFile } from "node:fs/promises";
import { GetObjectCommand } from "@aws-sdk/client-s3";
import { parseBackupConfig, parseManifest, type BackupConfig, type BackupManifest } from "../../contracts";
import { backupDeps } from "../../hostscripts/backup/command";
import type { BackupDeps, BackupResult } from "../../hostscripts/backup/run";
import { memoryLogger } from "../../hostscripts/common/log";
import type { Lab } from "../../lab/lab";

/** The lab's backup config and the backup's dependencies (real clients against the emulator). */
export async function labBackup(lab: Lab): Promise<{ config: BackupConfig; deps: BackupDeps }> {
  const config = parseBackupConfig(JSON.parse(await readFile(lab.backupConfigPath, "utf8")));
  return { config, deps: await backupDeps(config, memoryLogger()) };
}

/** The manifest a backup wrote, read back from the bucket. */
export async function storedManifest(
  deps: BackupDeps,
  config: BackupConfig,
  result: BackupResult,
): Promise<BackupManifest> {
  const object = await deps.s3.send(
    new GetObjectCommand({ Bucket: config.s3.bucket, Key: result.manifestKey }),
  );
  return parseManifest(JSON.parse(await object.Body!.transformToString()));
}

/** The sequence number of domain 0 in a MariaDB GTID list (the lab writes only there). */
export function domainZeroSeq(list: string | null | undefined): number {
  const match = /(?:^|,)0-\d+-(\d+)/.exec(list ?? "");
  if (match === null) throw new Error(`no domain 0 in "${list}"`);
  return Number(match[1]);
}
