import { readFile } from "node:fs/promises";
import { join } from "node:path";
import {
  BACKUP_CREATED,
  MANIFEST_OBJECT,
  parseBackupCreated,
  parseManifest,
  type BackupCreatedMessage,
  type BackupManifest,
} from "../../contracts";
import { writeDurably } from "../common/durable";

/**
 * The files a backup keeps in its local directory to say how far it got, so the next run can finish or
 * remove what a killed run left (repair.ts). Each is written atomically and durably: a temporary
 * `<name>.partial`, fsynced, renamed into place, and the directory fsynced, so after a crash of the process
 * or the host a progress file is either whole or absent (a leftover `.partial` is garbage).
 */

/**
 * The open multipart uploads (bucket, key, upload id of each archive chunk): rewritten as each is created,
 * removed once all are completed or aborted.
 */
export const UPLOAD_RECORD = "upload.json";

/**
 * The staged publication: the manifest and the `backup.created` message, written once every part of the
 * archive is up and before the upload is completed; removed once SQS took the message.
 */
export const OUTBOX = "outbox.json";

/** One open multipart upload a backup records in `upload.json`. */
export interface UploadRecord {
  bucket: string;
  key: string;
  uploadId: string;
  /**
   * Its completion, recorded once every part is up and before the publication is staged: the next run
   * completes a staged backup's uploads with it when a crash left them open.
   */
  completion?: RecordedCompletion;
}

/** What completes a multipart upload: its parts as S3 confirmed them, and the object's size and full CRC32. */
export interface RecordedCompletion {
  bytes: number;
  /** The full-object CRC32, base64. */
  crc32: string;
  parts: Array<{ PartNumber: number; ETag?: string; ChecksumCRC32?: string; bytes: number }>;
}

/** The uploads `upload.json` records: a list, or the single upload an earlier release recorded. */
export async function readUploadRecords(dir: string): Promise<UploadRecord[]> {
  const value = JSON.parse(await readFile(join(dir, UPLOAD_RECORD), "utf8")) as UploadRecord | UploadRecord[];
  const records = Array.isArray(value) ? value : [value];
  for (const record of records) {
    if (
      typeof record?.bucket !== "string" ||
      typeof record.key !== "string" ||
      typeof record.uploadId !== "string"
    )
      throw new Error(`${UPLOAD_RECORD} holds something that is not an upload: ${JSON.stringify(record)}`);
  }
  return records;
}

/** What `outbox.json` holds: everything the next run needs to complete the backup. */
export interface Outbox {
  message: BackupCreatedMessage;
  manifest: BackupManifest;
}

/** Writes a progress file (one JSON line). */
export async function writeProgressFile(dir: string, name: string, value: unknown): Promise<void> {
  await writeDurably(join(dir, name), JSON.stringify(value) + "\n");
}

/** Stages the publication of a backup: the outbox, then `manifest.json`. */
export async function stagePublication(dir: string, outbox: Outbox): Promise<void> {
  await writeProgressFile(dir, OUTBOX, outbox);
  await writeDurably(join(dir, MANIFEST_OBJECT), JSON.stringify(outbox.manifest, null, 2) + "\n");
}

/**
 * The staged publication in `dir`, validated. An outbox of an earlier release holds the message alone; its
 * manifest is then `manifest.json`. Throws when either is missing or invalid.
 */
export async function readOutbox(dir: string): Promise<Outbox> {
  const value = JSON.parse(await readFile(join(dir, OUTBOX), "utf8")) as Partial<Outbox> & { type?: string };
  if (value.type === BACKUP_CREATED) {
    const manifest = await readFile(join(dir, MANIFEST_OBJECT), "utf8");
    return {
      message: parseBackupCreated(JSON.stringify(value)),
      manifest: parseManifest(JSON.parse(manifest)),
    };
  }
  return {
    message: parseBackupCreated(JSON.stringify(value.message)),
    manifest: parseManifest(value.manifest),
  };
}
