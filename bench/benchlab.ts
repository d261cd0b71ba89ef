import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { DeleteObjectsCommand, ListObjectsV2Command, type S3Client } from "@aws-sdk/client-s3";
import { PurgeQueueCommand, type SQSClient } from "@aws-sdk/client-sqs";
import { parseBackupConfig, type BackupConfig } from "../contracts";
import { DEFAULT_CHUNK_BYTES } from "../hostscripts/backup/archive";
import { labDown, labUp, readLab, sql, type Lab } from "../lab/lab";
import { waitUntil } from "../lab/processes";

/**
 * The bench's lab: one of exactly the requested size with the load's binary logs purged, our backup config
 * for it, and the emulator emptied between backups. Shared by the main run and the lock-modes suite.
 */

/** Progress on stderr, with the time. */
export function say(message: string): void {
  process.stderr.write(`bench ${new Date().toISOString().slice(11, 19)} ${message}\n`);
}

/** sysbench tables × rows and the btrfs image size of a dataset. */
export interface LabSize {
  tables: number;
  tableSize: number;
  imageSizeGiB: number;
}

/** A lab of exactly the requested size: an existing one with another dataset is torn down first. */
export async function freshLab(dir: string, size: LabSize): Promise<Lab> {
  const existing = await readLab(dir).catch(() => undefined);
  if (
    existing !== undefined &&
    (existing.dataset.tables !== size.tables || existing.dataset.tableSize !== size.tableSize)
  ) {
    await labDown(dir);
  }
  const lab = await labUp({ dir, load: false, ...size });
  // The binary logs of loading the dataset would double the datadir: a replica keeps them for days, not
  // the size of its data, so they are purged (the active one stays, as on any host).
  for (const server of ["primary", "replica"] as const) await purgeBinaryLogs(lab, server);
  await sql(lab, "replica", "FLUSH RELAY LOGS");
  return lab;
}

/**
 * Rotates the binary log and purges every older one. MariaDB keeps a log until InnoDB's binlog
 * checkpoint has passed it (it may be needed for crash recovery) and then says only "in use" in a
 * warning, so the purge is repeated until one log is left.
 */
async function purgeBinaryLogs(lab: Lab, server: "primary" | "replica"): Promise<void> {
  await sql(lab, server, "FLUSH BINARY LOGS");
  const [status] = await sql(lab, server, "SHOW MASTER STATUS");
  const current = String(status?.File);
  const purged = await waitUntil(
    async () => {
      await sql(lab, server, "PURGE BINARY LOGS TO ?", [current]);
      return (await sql(lab, server, "SHOW BINARY LOGS")).length === 1;
    },
    30_000,
    500,
  );
  if (!purged)
    say(`the ${server}'s binary logs before ${current} could not be purged within 30 s; measuring with them`);
}

/**
 * The lab's backup config, changed by `change`, with the multipart part size capped at what the emulator
 * accepts: fauxqs 1.9 refuses request bodies over 11 MiB (its HTTP body limit), and S3 itself takes parts
 * up to 5 GiB. Written to `work/name`; returns its path.
 */
export async function benchBackupConfig(
  lab: Lab,
  work: string,
  notes: string[],
  change: (config: BackupConfig) => BackupConfig = (config) => config,
  name = "backup.json",
): Promise<string> {
  const config = change(parseBackupConfig(JSON.parse(await readFile(lab.backupConfigPath, "utf8"))));
  const configured = config.s3.partSizeMiB;
  if (configured === undefined || configured > EMULATOR_MAX_PART_MIB) {
    config.s3.partSizeMiB = EMULATOR_MAX_PART_MIB;
    notes.push(
      `our backups upload ${EMULATOR_MAX_PART_MIB} MiB parts (the lab config says ${configured ?? "nothing: default"}): ` +
        "fauxqs 1.9 rejects request bodies over 11 MiB",
    );
  }
  const path = join(work, name);
  await writeFile(path, `${JSON.stringify(config, null, 2)}\n`);
  return path;
}

/** The product's chunk size in MiB (`compression.chunkMiB` defaults to it), which the benches back up with. */
export const PRODUCT_CHUNK_MIB = DEFAULT_CHUNK_BYTES / (1024 * 1024);

/** The largest multipart part the emulator accepts, in MiB (its body limit is 11 MiB). */
const EMULATOR_MAX_PART_MIB = 10;

/** Deletes every object in the lab bucket and every message of the verification queue. */
export async function clearRemote(lab: Lab, s3: S3Client, sqs: SQSClient): Promise<void> {
  for (;;) {
    const listed = await s3.send(new ListObjectsV2Command({ Bucket: lab.s3.bucket }));
    const keys = (listed.Contents ?? []).flatMap((o) => (o.Key ? [{ Key: o.Key }] : []));
    if (keys.length === 0) break;
    await s3.send(new DeleteObjectsCommand({ Bucket: lab.s3.bucket, Delete: { Objects: keys } }));
  }
  await sqs.send(new PurgeQueueCommand({ QueueUrl: lab.sqs.queueUrl }));
}
