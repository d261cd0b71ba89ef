import { createHash, randomBytes } from "node:crypto";
import { PutObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import {
  archiveKey,
  backupIdTime,
  manifestKey,
  newBackupId,
  parseManifest,
  parseVerificationReport,
  verificationKey,
  type BackupManifest,
  type BackupRef,
  type Verdict,
  type VerificationReport,
} from "../contracts";

/**
 * Synthetic backups: manifests and verdicts that pass the contracts, and the archive objects beside them, in
 * whatever number a test or benchmark of `status` needs — thousands of backups without taking thousands.
 * The archive bytes are random filler (their size is what the listing shows); nothing restores them.
 */

/** A manifest of `ref` that passes `parseManifest`. */
export function syntheticManifest(
  ref: BackupRef,
  opts: { lockMs?: number; archiveBytes?: number } = {},
): BackupManifest {
  const taken = backupIdTime(ref.backupId);
  const done = new Date(taken.getTime() + 60_000).toISOString();
  const bytes = opts.archiveBytes ?? 1024;
  return parseManifest({
    formatVersion: 1,
    backupId: ref.backupId,
    cluster: ref.cluster,
    host: ref.host,
    startedAt: taken.toISOString(),
    completedAt: done,
    server: { flavor: "mariadb", version: "10.11.6", serverId: 2 },
    settings: {
      innodbPageSize: 16384,
      lowerCaseTableNames: 0,
      logBinBasename: "/var/lib/mysql/data/mysql-bin",
      logBinIndex: "/var/lib/mysql/data/mysql-bin.index",
      datadir: "/var/lib/mysql/data",
      innodbLogFileSize: 100663296,
      innodbDataFilePath: "ibdata1:12M:autoextend",
    },
    position: {
      gtidBinlogPos: "0-1-100",
      gtidSlavePos: "0-1-100",
      gtidCurrentPos: "0-1-100",
      gtidExecuted: null,
      binlog: { file: "mysql-bin.000002", pos: 4711 },
      source: { host: "127.0.0.1", port: 3306, file: "mysql-bin.000007", pos: 815, usingGtid: "Slave_Pos" },
    },
    lock: { method: "FLUSH TABLES WITH READ LOCK", ms: opts.lockMs ?? 42.5 },
    snapshot: { driver: "btrfs", name: `mysql-backup-${ref.backupId}`, sourceRoot: "/var/lib/mysql" },
    archive: {
      key: archiveKey(ref),
      bytes,
      sha256: sha256(ref.backupId),
      compression: "zstd",
      format: "tar",
      rawBytes: bytes * 3,
    },
    files: [{ path: "data/ibdata1", bytes: bytes * 3, sha256: sha256(`${ref.backupId}/ibdata1`) }],
    tables: [{ schema: "shop", table: "orders", engine: "InnoDB" }],
  });
}

/** A verification report of `ref` that passes `parseVerificationReport`. */
export function syntheticReport(
  ref: BackupRef,
  bucket: string,
  verdict: Verdict,
  opts: { restoreSeconds?: number; failedCheck?: "objects" | "tables" } = {},
): VerificationReport {
  const taken = backupIdTime(ref.backupId);
  const failedCheck = verdict === "failed" ? (opts.failedCheck ?? "tables") : null;
  const restoreSeconds = opts.restoreSeconds ?? 61;
  return parseVerificationReport({
    formatVersion: 1,
    bucket,
    manifestKey: manifestKey(ref),
    backupId: ref.backupId,
    cluster: ref.cluster,
    host: ref.host,
    verdict,
    failedCheck,
    checks:
      verdict === "unsupported"
        ? []
        : [{ name: failedCheck ?? "objects", passed: verdict === "verified", detail: "synthetic" }],
    verifiedAt: new Date(taken.getTime() + 600_000).toISOString(),
    verifier: { host: "verifier-1", serverVersion: "10.11.6-MariaDB" },
    position: {
      captured: { gtid: "0-1-100", binlog: { file: "mysql-bin.000002", pos: 4711 } },
      restored:
        verdict === "verified" ? { gtid: "0-1-100", binlog: { file: "mysql-bin.000002", pos: 4711 } } : null,
    },
    tables: [],
    timings: {
      downloadExtractSeconds: restoreSeconds / 2,
      recoverySeconds: 1,
      checksSeconds: restoreSeconds / 2 - 1,
      restoreSeconds,
    },
    backupAgeSeconds: 600,
    ...(verdict === "unsupported" ? { unsupportedReason: "synthetic: another flavor" } : {}),
  });
}

/** What one synthetic backup is: complete or not, and the verdict written for it (null: none). */
export interface SyntheticBackup {
  ref: BackupRef;
  complete: boolean;
  verdict: Verdict | null;
}

/** The backups of a synthetic estate: `hosts` hosts per cluster, one backup every `everyHours` per host. */
export function syntheticEstate(plan: {
  prefix: string;
  clusters: string[];
  hosts: number;
  backupsPerHost: number;
  everyHours: number;
  now: Date;
  /** The verdict of the backup `age` steps back (0 = newest): the default verifies all but the newest. */
  verdictAt?: (age: number) => Verdict | null;
}): SyntheticBackup[] {
  const verdictAt = plan.verdictAt ?? ((age: number) => (age === 0 ? null : "verified"));
  const backups: SyntheticBackup[] = [];
  for (const cluster of plan.clusters) {
    for (let h = 1; h <= plan.hosts; h++) {
      for (let age = 0; age < plan.backupsPerHost; age++) {
        const at = new Date(plan.now.getTime() - (age * plan.everyHours + 1) * 3_600_000);
        const ref = { prefix: plan.prefix, cluster, host: `replica${h}`, backupId: newBackupId(at) };
        backups.push({ ref, complete: true, verdict: verdictAt(age) });
      }
    }
  }
  return backups;
}

/** Writes the backups' objects (archive, manifest, verdict) to S3, `parallel` PUTs at a time. */
export async function seedBackups(
  s3: S3Client,
  bucket: string,
  backups: SyntheticBackup[],
  parallel = 16,
): Promise<number> {
  const puts: Array<{ key: string; body: Buffer | string }> = [];
  for (const b of backups) {
    const archiveBytes = 512 + (parseInt(b.ref.backupId.slice(-6), 16) % 4096);
    puts.push({ key: archiveKey(b.ref), body: randomBytes(archiveBytes) });
    if (b.complete)
      puts.push({
        key: manifestKey(b.ref),
        body: JSON.stringify(syntheticManifest(b.ref, { archiveBytes })),
      });
    if (b.verdict !== null) {
      puts.push({
        key: verificationKey(b.ref),
        body: JSON.stringify(syntheticReport(b.ref, bucket, b.verdict)),
      });
    }
  }
  let next = 0;
  const worker = async () => {
    while (next < puts.length) {
      const { key, body } = puts[next++];
      await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
  return puts.length;
}

function sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}
