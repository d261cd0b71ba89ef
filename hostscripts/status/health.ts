import type {
  BackupSinceVerified,
  HealthReason,
  HealthState,
  HostStatus,
  NewestBackup,
  NewestVerified,
  VerificationReport,
} from "../../contracts";
import { humanDuration } from "../common/output";
import type { HostScan, Read, ScannedBackup } from "./scan";

/**
 * The judgement of one host from what the scan read: pure, so every rule is tested on constructed scans.
 * The rules follow the alarms (components/alerting.ts), so `status` and the pager agree: no complete backup
 * within the window, or a failed verdict since the newest verified backup, is critical; a verified backup
 * older than the window, or one that waits too long for its verdict, is a warning (critical at twice the
 * window, when the "no verified backup" alarm has long paged).
 */

/** When a host's state turns. */
export interface HealthPolicy {
  /** Hours within which a complete and a verified backup are due. */
  windowHours: number;
  /** Hours a backup may wait for its verdict, or an archive for its manifest. */
  verifyWithinHours: number;
}

/** Where a host's objects are, for messages that send the reader to them. */
export interface HostLocation {
  /** `s3://bucket/prefix/cluster/host/`. */
  url: string;
  cluster: string;
}

const RANK: Record<HealthState, number> = { ok: 0, warning: 1, critical: 2 };

/** The worse of the states (ok when there are none). */
export function worst(states: HealthState[]): HealthState {
  return states.reduce<HealthState>((a, b) => (RANK[b] > RANK[a] ? b : a), "ok");
}

/** The host's line: its newest and newest verified backups, what is pending or failed since, its health. */
export function judgeHost(scan: HostScan, policy: HealthPolicy, now: Date, where: HostLocation): HostStatus {
  // Backup ids carry whole seconds.
  const age = (b: { takenAt: Date }) => Math.max(0, Math.round((now.getTime() - b.takenAt.getTime()) / 1000));
  const newest = scan.backups.find((b) => b.complete) ?? null;
  const verified = newestVerifiedOf(scan);
  const newestVerifiedBackup = verified && scan.backups.find((b) => b.backupId === verified.backupId);
  const newestBackup: NewestBackup | null =
    newest === null
      ? null
      : {
          backupId: newest.backupId,
          ageSeconds: age(newest),
          archiveBytes: newest.archiveBytes ?? 0,
          lockMs:
            scan.newestManifest && "value" in scan.newestManifest ? scan.newestManifest.value.lock.ms : 0,
          verdict: verdictOf(scan.verdicts.get(newest.backupId)),
        };
  const newestVerified: NewestVerified | null =
    verified && newestVerifiedBackup
      ? {
          backupId: verified.backupId,
          ageSeconds: age(newestVerifiedBackup),
          verifiedAt: verified.verifiedAt,
          restoreSeconds: verified.timings.restoreSeconds,
        }
      : null;
  const since = scan.backups
    .filter((b) => verified === null || b.backupId > verified.backupId)
    .map((b) => sinceVerified(b, scan.verdicts.get(b.backupId), age(b)));
  const reasons = [
    ...backupReasons(scan, newestBackup, policy, where),
    ...verdictReasons(scan, since, policy, where),
    ...verifiedAgeReasons(scan, newestVerified, policy, age),
  ].sort((a, b) => RANK[b.state] - RANK[a.state]);
  if (reasons.length === 0) reasons.push({ state: "ok", message: healthyLine(newestBackup, newestVerified) });
  return {
    host: scan.host,
    health: worst(reasons.map((r) => r.state)),
    reasons,
    backups: scan.backups.filter((b) => b.complete).length,
    newestBackup,
    newestVerified,
    sinceVerified: since,
    binlog: null,
  };
}

function newestVerifiedOf(scan: HostScan): VerificationReport | null {
  for (const read of scan.verdicts.values()) {
    if ("value" in read && read.value.verdict === "verified") return read.value;
  }
  return null;
}

function verdictOf(read: Read<VerificationReport> | undefined): NewestBackup["verdict"] {
  return read && "value" in read ? read.value.verdict : null;
}

function sinceVerified(
  backup: ScannedBackup,
  read: Read<VerificationReport> | undefined,
  ageSeconds: number,
): BackupSinceVerified {
  const base = { backupId: backup.backupId, ageSeconds, failedCheck: null };
  if (!backup.complete) return { ...base, state: "incomplete" };
  if (read === undefined) return { ...base, state: "unverified" };
  if (!("value" in read)) return { ...base, state: "failed" };
  const report = read.value;
  return report.verdict === "unsupported"
    ? { ...base, state: "unsupported" }
    : { ...base, state: "failed", failedCheck: report.failedCheck };
}

/** The replica side: is there a complete backup, recent enough, with a readable manifest? */
function backupReasons(
  scan: HostScan,
  newest: NewestBackup | null,
  policy: HealthPolicy,
  where: HostLocation,
): HealthReason[] {
  const timer = "check mysql-backup.timer and `journalctl -u mysql-backup.service` on the replica";
  if (scan.backups.length === 0) {
    return [{ state: "critical", message: `no backup at all under ${where.url}: ${timer}` }];
  }
  if (newest === null) {
    return [
      {
        state: "critical",
        message: `no complete backup: ${scan.backups.length} archive(s) without a manifest under ${where.url}; ${timer}`,
      },
    ];
  }
  const reasons: HealthReason[] = [];
  if (newest.ageSeconds > policy.windowHours * 3600) {
    reasons.push({
      state: "critical",
      message: `the newest complete backup ${newest.backupId} is ${humanDuration(newest.ageSeconds)} old (window ${policy.windowHours} h): ${timer}`,
    });
  }
  if (scan.newestManifest !== null && !("value" in scan.newestManifest)) {
    reasons.push({
      state: "critical",
      message: `s3://…/${scan.newestManifest.key} is not a valid manifest (${firstLine(scan.newestManifest.error)}): the backup cannot be restored; look at the object and at the replica's version of mysql-backup`,
    });
  }
  return reasons;
}

/** The verifier side: failed verdicts, the age of the newest verified backup, backups waiting too long. */
function verdictReasons(
  scan: HostScan,
  since: BackupSinceVerified[],
  policy: HealthPolicy,
  where: HostLocation,
): HealthReason[] {
  const reasons: HealthReason[] = [];
  for (const b of since) {
    const read = scan.verdicts.get(b.backupId);
    if (read !== undefined && !("value" in read)) {
      reasons.push({
        state: "critical",
        message: `s3://…/${read.key} is not a valid verification report (${firstLine(read.error)}): delete it (or restore its previous version) to have ${b.backupId} verified again`,
      });
    } else if (b.state === "failed") {
      reasons.push({
        state: "critical",
        message: `backup ${b.backupId} failed verification (check "${b.failedCheck}"): read ${where.url}${b.backupId}/verification.json; treat it as lost, the next verified backup clears this`,
      });
    } else if (b.state === "unsupported") {
      reasons.push({
        state: "critical",
        message: `no verifier could restore backup ${b.backupId} (verdict "unsupported"): run a verifier with the backup's server (mysqld.binary) for cluster ${where.cluster}`,
      });
    }
  }
  reasons.push(...overdueReasons(since, policy));
  return reasons;
}

/** How old the newest verified backup is; with none, whether the verifiers have had their time. */
function verifiedAgeReasons(
  scan: HostScan,
  verified: NewestVerified | null,
  policy: HealthPolicy,
  age: (b: ScannedBackup) => number,
): HealthReason[] {
  const window = policy.windowHours * 3600;
  const fleet = "check the verifier fleet, the verification queue and its DLQ";
  if (verified === null) {
    const complete = scan.backups.filter((b) => b.complete);
    if (complete.length === 0) return [];
    const oldest = complete[complete.length - 1];
    const unread = scan.verdictsNotRead > 0 ? ` (${scan.verdictsNotRead} older verdicts not read)` : "";
    const oldestAge = age(oldest);
    return [
      oldestAge > policy.verifyWithinHours * 3600
        ? {
            state: "critical",
            message: `no verified backup among the ${complete.length} complete backups${unread}: ${fleet}`,
          }
        : {
            state: "warning",
            message: `no backup verified yet (the first is ${humanDuration(oldestAge)} old; verifiers have ${policy.verifyWithinHours} h)`,
          },
    ];
  }
  if (verified.ageSeconds <= window) return [];
  return [
    {
      state: verified.ageSeconds > 2 * window ? "critical" : "warning",
      message: `the newest verified backup ${verified.backupId} is ${humanDuration(verified.ageSeconds)} old (window ${policy.windowHours} h): ${fleet}`,
    },
  ];
}

function overdueReasons(since: BackupSinceVerified[], policy: HealthPolicy): HealthReason[] {
  const limit = policy.verifyWithinHours * 3600;
  const reasons: HealthReason[] = [];
  const waiting = since.filter((b) => b.state === "unverified" && b.ageSeconds > limit);
  if (waiting.length > 0) {
    const oldest = waiting[waiting.length - 1];
    reasons.push({
      state: "warning",
      message: `${waiting.length} backup(s) without a verdict after ${policy.verifyWithinHours} h, the oldest ${oldest.backupId} (${humanDuration(oldest.ageSeconds)}): check the verification queue, its DLQ and the verifier fleet`,
    });
  }
  const broken = since.filter((b) => b.state === "incomplete" && b.ageSeconds > limit);
  if (broken.length > 0) {
    reasons.push({
      state: "warning",
      message: `${broken.length} backup(s) with an archive but no manifest, the newest ${broken[0].backupId}: the run died before it completed (journalctl -u mysql-backup.service on the replica); the next run repairs what it can`,
    });
  }
  return reasons;
}

function healthyLine(newest: NewestBackup | null, verified: NewestVerified | null): string {
  if (newest === null || verified === null) return "ok";
  return `newest backup ${humanDuration(newest.ageSeconds)} old, newest verified ${humanDuration(verified.ageSeconds)} old (restored in ${Math.round(verified.restoreSeconds)} s)`;
}

function firstLine(text: string): string {
  return text.split("\n").slice(0, 2).join(" ").slice(0, 300);
}
