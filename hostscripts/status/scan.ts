import { ListObjectsV2Command, type S3Client } from "@aws-sdk/client-s3";
import {
  ARCHIVE_OBJECT,
  BACKUP_ID_PATTERN,
  MANIFEST_OBJECT,
  NAME_PATTERN,
  VERIFICATION_OBJECT,
  backupIdTime,
  clusterPrefix,
  hostPrefix,
  manifestKey,
  normalizePrefix,
  parseManifest,
  parseVerificationReport,
  verificationKey,
  type BackupManifest,
  type BackupRef,
  type VerificationReport,
} from "../../contracts";
import { messageOf } from "../common/errors";
import { getObjectOrNull, s3Call } from "../common/s3";

/**
 * What `status` reads from S3, and no more: keys are listed (one request per 1,000 keys, no object read), and
 * per host only the newest complete backup's manifest and the verdicts newer than, and including, the newest
 * verified one are fetched — two GETs for a healthy host whatever the number of backups. Sizes come from
 * the listing. Hosts are read in parallel.
 */

/** One backup directory of a host, as the listing shows it. */
export interface ScannedBackup {
  backupId: string;
  takenAt: Date;
  /** The manifest exists: the backup completed. */
  complete: boolean;
  /** The archive's size from the listing, or null when there is no archive object. */
  archiveBytes: number | null;
  /** A `verification.json` exists. */
  hasVerdict: boolean;
}

/** An object read and validated, or why it could not be used (it exists but is not a valid document). */
export type Read<T> = { value: T } | { key: string; error: string };

/** Everything `status` knows about one host. */
export interface HostScan {
  host: string;
  /** Newest first. */
  backups: ScannedBackup[];
  /** The manifest of the newest complete backup, or null when there is none. */
  newestManifest: Read<BackupManifest> | null;
  /** The verdicts read: of complete backups newest first, down to the first `verified` one. */
  verdicts: Map<string, Read<VerificationReport>>;
  /** Verdicts left unread because the cap was reached before a verified one. */
  verdictsNotRead: number;
}

/** What the answer cost, for `--json` and the benchmark. */
export interface ReadCounts {
  listRequests: number;
  keysListed: number;
  objectsFetched: number;
}

/** Reading verdicts newest first stops here even if none was verified: a bound on a broken host's cost. */
export const MAX_VERDICT_READS = 50;
/** Hosts read at once. */
const PARALLEL_HOSTS = 8;

const backupIdPattern = new RegExp(BACKUP_ID_PATTERN);
const namePattern = new RegExp(NAME_PATTERN);

/** S3 reads of one `status` run, counted. */
export class StatusReader {
  readonly counts: ReadCounts = { listRequests: 0, keysListed: 0, objectsFetched: 0 };

  constructor(
    private readonly s3: S3Client,
    readonly bucket: string,
    readonly prefix: string,
  ) {}

  /** The clusters below the prefix: the names of its "directories" that are valid cluster names. */
  async clusters(): Promise<string[]> {
    const p = normalizePrefix(this.prefix);
    return this.children(p ? `${p}/` : "");
  }

  /** The hosts of a cluster: its "directories" that are valid host names. */
  async hosts(cluster: string): Promise<string[]> {
    return this.children(clusterPrefix(this.prefix, cluster));
  }

  /** Lists a host's keys and reads its newest manifest and the verdicts that matter. */
  async scanHost(cluster: string, host: string): Promise<HostScan> {
    const backups = await this.listBackups(cluster, host);
    const ref = (backupId: string): BackupRef => ({ prefix: this.prefix, cluster, host, backupId });
    const newest = backups.find((b) => b.complete);
    const newestManifest =
      newest === undefined ? null : await this.read(manifestKey(ref(newest.backupId)), parseManifest);
    const verdicts = new Map<string, Read<VerificationReport>>();
    const judged = backups.filter((b) => b.complete && b.hasVerdict);
    for (const backup of judged.slice(0, MAX_VERDICT_READS)) {
      const verdict = await this.read(verificationKey(ref(backup.backupId)), parseVerificationReport);
      if (verdict === null) continue;
      verdicts.set(backup.backupId, verdict);
      if ("value" in verdict && verdict.value.verdict === "verified") break;
    }
    const verifiedFound = [...verdicts.values()].some((v) => "value" in v && v.value.verdict === "verified");
    const verdictsNotRead = verifiedFound ? 0 : Math.max(0, judged.length - MAX_VERDICT_READS);
    return { host, backups, newestManifest, verdicts, verdictsNotRead };
  }

  /** Scans every host, at most PARALLEL_HOSTS at once, in the order given. */
  async scanHosts(cluster: string, hosts: string[]): Promise<HostScan[]> {
    const results: HostScan[] = new Array(hosts.length);
    let next = 0;
    const worker = async () => {
      while (next < hosts.length) {
        const i = next++;
        results[i] = await this.scanHost(cluster, hosts[i]);
      }
    };
    await Promise.all(Array.from({ length: Math.min(PARALLEL_HOSTS, hosts.length) }, worker));
    return results;
  }

  /** Every backup directory below the host's prefix, newest first, from the keys alone. */
  private async listBackups(cluster: string, host: string): Promise<ScannedBackup[]> {
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
        };
        if (name === MANIFEST_OBJECT) backup.complete = true;
        if (name === ARCHIVE_OBJECT) backup.archiveBytes = object.Size ?? 0;
        if (name === VERIFICATION_OBJECT) backup.hasVerdict = true;
        found.set(backupId, backup);
      }
    }
    return [...found.values()]
      .filter((b) => b.complete || b.archiveBytes !== null)
      .sort((a, b) => b.backupId.localeCompare(a.backupId));
  }

  /** The "directory" names one level below `prefix` that are valid cluster/host names. */
  private async children(prefix: string): Promise<string[]> {
    const names: string[] = [];
    for await (const page of this.pages(prefix, "/")) {
      for (const common of page.CommonPrefixes ?? []) {
        const name = (common.Prefix ?? "").slice(prefix.length).replace(/\/$/, "");
        if (namePattern.test(name)) names.push(name);
      }
    }
    return names.sort();
  }

  private async *pages(prefix: string, delimiter?: string) {
    let token: string | undefined;
    do {
      const page = await s3Call(`list s3://${this.bucket}/${prefix}`, () =>
        this.s3.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: prefix,
            Delimiter: delimiter,
            ContinuationToken: token,
          }),
        ),
      );
      this.counts.listRequests++;
      this.counts.keysListed += (page.Contents?.length ?? 0) + (page.CommonPrefixes?.length ?? 0);
      yield page;
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
  }

  /** One JSON document, validated; null when it vanished since the listing (retention, a person). */
  private async read<T>(key: string, parse: (value: unknown) => T): Promise<Read<T> | null> {
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
}
