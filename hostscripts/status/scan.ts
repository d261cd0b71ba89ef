import {
  manifestKey,
  parseManifest,
  parseVerificationReport,
  verificationKey,
  type BackupManifest,
  type BackupRef,
  type VerificationReport,
} from "../../contracts";
import { BackupListing, type Read, type ScannedBackup } from "../common/listing";

/**
 * What `status` reads from S3, and no more: keys are listed (common/listing.ts: one request per 1,000 keys,
 * no object read), and per host only the newest complete backup's manifest and the verdicts newer than, and
 * including, the newest verified one are fetched — two GETs for a healthy host whatever the number of
 * backups. Sizes come from the listing. Hosts are read in parallel.
 */

export type { Read, ScannedBackup } from "../common/listing";

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

/** Reading verdicts newest first stops here even if none was verified: a bound on a broken host's cost. */
export const MAX_VERDICT_READS = 50;
/** Hosts read at once. */
const PARALLEL_HOSTS = 8;

/** S3 reads of one `status` run, counted. */
export class StatusReader extends BackupListing {
  /** Lists a host's keys and reads its newest manifest and the verdicts that matter. */
  async scanHost(cluster: string, host: string): Promise<HostScan> {
    const backups = await this.backups(cluster, host);
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
}
