import { BACKUP_ID_PATTERN, NAME_PATTERN } from "./keys";
import { schemaFor } from "./schema";
import { parser } from "./validate";

export const BACKUP_CREATED = "backup.created";

/**
 * `backup.created` v1: sent by a replica after its manifest is uploaded. The verifier re-checks
 * everything it can (the manifest key against the layout, the archive hash against the manifest).
 */
export interface BackupCreatedMessage {
  type: typeof BACKUP_CREATED;
  version: 1;
  bucket: string;
  manifestKey: string;
  backupId: string;
  cluster: string;
  host: string;
  createdAt: string;
  archiveSha256: string;
}

export const backupCreatedSchema = schemaFor<BackupCreatedMessage>()({
  $id: "https://mysql-backup-pipeline/backup-created-v1.json",
  type: "object",
  additionalProperties: false,
  required: [
    "type",
    "version",
    "bucket",
    "manifestKey",
    "backupId",
    "cluster",
    "host",
    "createdAt",
    "archiveSha256",
  ],
  properties: {
    type: { const: BACKUP_CREATED },
    version: { const: 1 },
    bucket: { type: "string", pattern: "^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$" },
    manifestKey: { type: "string", minLength: 1, maxLength: 1024 },
    backupId: { type: "string", pattern: BACKUP_ID_PATTERN },
    cluster: { type: "string", pattern: NAME_PATTERN },
    host: { type: "string", pattern: NAME_PATTERN },
    createdAt: { type: "string", format: "date-time" },
    archiveSha256: { type: "string", pattern: "^[0-9a-f]{64}$" },
  },
});

const parseMessage = parser("backup.created message", backupCreatedSchema);

/** Parses an SQS body: JSON first, then the schema; both failures name what is wrong. */
export function parseBackupCreated(body: string | undefined): BackupCreatedMessage {
  let value: unknown;
  try {
    value = JSON.parse(body ?? "");
  } catch (e) {
    throw new Error(
      `backup.created message is not JSON (${(e as Error).message}): ${String(body).slice(0, 120)}`,
      { cause: e },
    );
  }
  return parseMessage(value);
}
