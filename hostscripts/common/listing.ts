import { ListObjectsV2Command, type ListObjectsV2CommandOutput, type S3Client } from "@aws-sdk/client-s3";
import {
  ARCHIVE_CHUNK_PATTERN,
  ARCHIVE_OBJECT,
  BACKUP_ID_PATTERN,
  BINLOGS_SEGMENT,
  CHAIN_VERDICT_OBJECT,
  DRILL_VERDICT_OBJECT,
  MANIFEST_OBJECT,
  NAME_PATTERN,
  VERIFICATION_OBJECT,
  backupIdTime,
  clusterPrefix,
  hostPrefix,
  normalizePrefix,
} from "../../contracts";
import { messageOf } from "./errors";
import { getObjectOrNull, s3Call } from "./s3";

/**
 * The backups in a bucket as their keys show them (DESIGN §3 layout): clusters and hosts as the "directories"
 * of a delimiter listing, each host's backups from its keys alone — one request per 1,000 keys, no object
 * read. `status` and `check` read S3 through it; every request is counted.
 */

/** One backup directory of a host, as the listing shows it. */
export interface ScannedBackup {
  backupId: string;
  takenAt: Date;
  /** The manifest exists: the backup completed. */
  complete: boolean;
  /**
   * The archive's size from the listing (the one object of format 1, the sum of the chunks of format 2), or
   * null when there is no archive object.
   */
  archiveBytes: number | null;
  /** A `verification.json` exists. */
  hasVerdict: boolean;
  /** A `chain-verification.json` exists: the point-in-time chain to this backup was judged. */
  hasChainVerdict: boolean;
  /** A `pitr-drill.json` exists: the verifier drilled a restore to a point before this backup. */
  hasDrillVerdict?: boolean;
}

/** An object read and validated, or why it could not be used (it exists but is not a valid document). */
export type Read<T> = { value: T } | { key: string; error: string };

/** What the reads cost. */
export interface ReadCounts {
  listRequests: number;
  keysListed: number;
  objectsFetched: number;
}

const backupIdPattern = new RegExp(BACKUP_ID_PATTERN);
const chunkObject = new RegExp(ARCHIVE_CHUNK_PATTERN);
const namePattern = new RegExp(NAME_PATTERN);

/** Reads of one bucket and prefix, counted. */
export class BackupListing {
  readonly counts: ReadCounts = { listRequests: 0, keysListed: 0, objectsFetched: 0 };

  constructor(
    protected readonly s3: S3Client,
    readonly bucket: string,
    readonly prefix: string,
  ) {}

  /** `s3://bucket/prefix/`, for messages. */
  get url(): string {
    const p = normalizePrefix(this.prefix);
    return `s3://${this.bucket}/${p ? `${p}/` : ""}`;
  }

  /** The clusters below the prefix: the names of its "directories" that are valid cluster names. */
  async clusters(): Promise<string[]> {
    const p = normalizePrefix(this.prefix);
    return this.children(p ? `${p}/` : "");
  }

  /** The hosts of a cluster: its "directories" that are valid host names, but not its binary log archive. */
  async hosts(cluster: string): Promise<string[]> {
    return (await this.children(clusterPrefix(this.prefix, cluster))).filter((h) => h !== BINLOGS_SEGMENT);
  }

  /** Every backup directory below the host's prefix (with an archive or a manifest), newest first. */
  async backups(cluster: string, host: string): Promise<ScannedBackup[]> {
    const prefix = hostPrefix(this.prefix, cluster, host);
    const found = new Map<string, ScannedBackup>();
    for await (const page of this.pages(prefix)) {
      for (const object of page.Contents ?? []) {
        const [backupId, name, ...deeper] = (object.Key ?? "").slice(prefix.length).split("/");
        if (deeper.length > 0 || !backupIdPattern.test(backupId)) continue;
        const backup = found.get(backupId) ?? {
          backupId,
          takenAt: backupIdTime(backupId),
          complete: false,
          archiveBytes: null,
          hasVerdict: false,
          hasChainVerdict: false,
        };
        if (name === MANIFEST_OBJECT) backup.complete = true;
        if (name === ARCHIVE_OBJECT || chunkObject.test(name))
          backup.archiveBytes = (backup.archiveBytes ?? 0) + (object.Size ?? 0);
        if (name === VERIFICATION_OBJECT) backup.hasVerdict = true;
        if (name === CHAIN_VERDICT_OBJECT) backup.hasChainVerdict = true;
        if (name === DRILL_VERDICT_OBJECT) backup.hasDrillVerdict = true;
        found.set(backupId, backup);
      }
    }
    return [...found.values()]
      .filter((b) => b.complete || b.archiveBytes !== null)
      .sort((a, b) => b.backupId.localeCompare(a.backupId));
  }

  /** One JSON document, validated; null when it vanished since the listing (retention, a person). */
  async read<T>(key: string, parse: (value: unknown) => T): Promise<Read<T> | null> {
    const response = await s3Call(`read s3://${this.bucket}/${key}`, () =>
      getObjectOrNull(this.s3, this.bucket, key),
    );
    this.counts.objectsFetched++;
    if (response === null) return null;
    const text = (await response.Body?.transformToString()) ?? "";
    try {
      return { value: parse(JSON.parse(text)) };
    } catch (error) {
      return { key, error: messageOf(error) };
    }
  }

  /** The "directory" names one level below `prefix` that match `pattern` (valid cluster/host names). */
  async children(prefix: string, pattern: RegExp = namePattern): Promise<string[]> {
    const names: string[] = [];
    for await (const page of this.pages(prefix, "/")) {
      for (const common of page.CommonPrefixes ?? []) {
        const name = (common.Prefix ?? "").slice(prefix.length).replace(/\/$/, "");
        if (pattern.test(name)) names.push(name);
      }
    }
    return names.sort();
  }

  /** One list request, counted: up to `maxKeys` keys after `startAfter` (S3 lists in UTF-8 byte order). */
  async listPage(request: {
    prefix: string;
    delimiter?: string;
    startAfter?: string;
    maxKeys?: number;
    token?: string;
  }): Promise<ListObjectsV2CommandOutput> {
    const page = await s3Call(`list s3://${this.bucket}/${request.prefix}`, () =>
      this.s3.send(
        new ListObjectsV2Command({
          Bucket: this.bucket,
          Prefix: request.prefix,
          Delimiter: request.delimiter,
          StartAfter: request.startAfter,
          MaxKeys: request.maxKeys,
          ContinuationToken: request.token,
        }),
      ),
    );
    this.counts.listRequests++;
    this.counts.keysListed += (page.Contents?.length ?? 0) + (page.CommonPrefixes?.length ?? 0);
    return page;
  }

  private async *pages(prefix: string, delimiter?: string) {
    let token: string | undefined;
    do {
      const page = await this.listPage({ prefix, delimiter, token });
      yield page;
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
  }
}
