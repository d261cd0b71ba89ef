import {
  BINLOG_SILENCE_SECONDS,
  type BinlogArchiveStatus,
  type BinlogGap,
  type BinlogSegmentEntry,
  type HealthReason,
  type RecoveryWindow,
} from "../../contracts";
import { BINLOG_SERVICE } from "../../contracts/units";
import { parseState } from "../common/gtid-state";
import type { Read } from "../common/listing";
import { humanDuration } from "../common/output";
import { restorableWindows, type ChainLink, type WindowSnapshot } from "../common/pitr-chain";
import type { ArchiveScan, EpochScan } from "./archive";

/**
 * The judgement of a host's binlog archive from what status read (pure: every rule is tested on constructed
 * scans). The rules follow the binlog alarms (components/pitr.ts), so status and the pager agree:
 * - lag (now minus the newest archived commit) above the RPO: warning; above 10 × RPO: critical — the
 *   exposure is an order of magnitude beyond the objective, and the lag alarm has paged for minutes;
 * - silence (nothing uploaded for BINLOG_SILENCE_SECONDS, or for the RPO when that is longer, since
 *   segments are cut within half of it): critical, as the `binlog-silent` alarm;
 * - a gap no verified backup was taken after: critical, as `binlog-gap` (restores past it are impossible);
 * - an archive the config expects that does not exist: critical;
 * - segments but no verified snapshot they continue: warning (no point-in-time restore is possible yet).
 * Status reads S3 alone, so it cannot tell an idle server from a stalled archiver: both age the newest
 * commit. A heartbeat write on the primary (pt-heartbeat, one row a second) keeps an idle cluster's lag
 * honest; docs/operations.md says so.
 */

/** What the archive is judged against. */
export interface ArchiveContext {
  rpoSeconds: number;
  /** The status config expects an archive of this host (`pitr.enabled`). */
  expected: boolean;
  /** Verified backups of the cluster a window may start from, with the GTID state their data holds. */
  snapshots: WindowSnapshot[];
  /** The cluster's newest verified backup: a gap before it is resolved. */
  newestVerified: { backupId: string; takenAt: Date } | null;
  /** `s3://…/<cluster>/binlogs/<host>/`, for messages. */
  url: string;
}

/** The archive's line in the host's status, and its findings. */
export interface ArchiveJudgement {
  status: BinlogArchiveStatus | null;
  reasons: HealthReason[];
}

const seconds = (now: Date, iso: string) => Math.max(0, Math.round((now.getTime() - Date.parse(iso)) / 1000));
const valid = <T>(read: Read<T> | null): T | null => (read !== null && "value" in read ? read.value : null);

/** Judges one host's archive; `scan` is null when the host has none. */
export function judgeArchive(scan: ArchiveScan | null, ctx: ArchiveContext, now: Date): ArchiveJudgement {
  if (scan === null || scan.epochs.length === 0) {
    if (!ctx.expected) return { status: null, reasons: [] };
    return {
      status: emptyStatus(ctx, 0),
      reasons: [
        {
          state: "critical",
          message: `binlog archive: none under ${ctx.url} although point-in-time recovery is on for this cluster: systemctl status ${BINLOG_SERVICE} on the replica, and mysql-backup check --config backup.json`,
        },
      ],
    };
  }
  const newestEpoch = [...scan.epochs].reverse().find((e) => valid(e.newest) !== null) ?? null;
  const newest = newestEpoch === null ? null : valid(newestEpoch.newest)!;
  const newestCommitAt = scan.epochs.reduce<string | null>(
    (at, e) => (e.newestCommitAt !== null && (at === null || e.newestCommitAt > at) ? e.newestCommitAt : at),
    null,
  );
  const gaps = gapsOf(scan.epochs, ctx);
  const window = newest === null ? null : archivedWindow(scan.epochs, newest, newestCommitAt, ctx);
  const status: BinlogArchiveStatus = {
    ...emptyStatus(ctx, scan.epochs.length + scan.epochsNotRead),
    lagSeconds: newestCommitAt === null ? null : seconds(now, newestCommitAt),
    newestCommitAt,
    silentSeconds: newest === null ? null : seconds(now, newest.archivedAt),
    newestSegment:
      newest === null
        ? null
        : {
            epoch: newest.epoch,
            sequence: newest.sequence,
            archivedAt: newest.archivedAt,
            gtidAfter: newest.gtid.after,
          },
    archivedWindow: window,
    gaps,
  };
  const reasons = [
    ...damaged(scan),
    ...currency(status, scan, ctx, now),
    ...gaps
      .filter((g) => g.resolvedBy === null)
      .map((g): HealthReason => ({
        state: "critical",
        message: `binlog archive: GAP found ${g.foundAt} (epoch ${g.epoch}): ${g.missing} were purged before they were archived, and no verified backup was taken since — no restore can reach past it. Take a backup now (systemctl start mysql-backup.service) and find out why the binlogs were purged early`,
      })),
    ...(newest !== null && window === null ? [noWindow(ctx)] : []),
  ];
  if (reasons.length === 0) reasons.push({ state: "ok", message: healthyLine(status) });
  return { status, reasons };
}

function emptyStatus(ctx: ArchiveContext, epochs: number): BinlogArchiveStatus {
  return {
    rpoSeconds: ctx.rpoSeconds,
    expected: ctx.expected,
    lagSeconds: null,
    newestCommitAt: null,
    silentSeconds: null,
    newestSegment: null,
    epochs,
    archivedWindow: null,
    provenWindow: null,
    lastDrill: null,
    gaps: [],
  };
}

/** Lag and silence. */
function currency(
  status: BinlogArchiveStatus,
  scan: ArchiveScan,
  ctx: ArchiveContext,
  now: Date,
): HealthReason[] {
  const rpo = ctx.rpoSeconds;
  const silenceLimit = Math.max(BINLOG_SILENCE_SECONDS, rpo);
  const unit = `systemctl status ${BINLOG_SERVICE} and journalctl -u ${BINLOG_SERVICE} on the replica`;
  if (status.silentSeconds === null) {
    const started = scan.epochs.at(-1)!;
    const since = valid(started.record)?.startedAt ?? null;
    const waited = since === null ? null : seconds(now, since);
    if (waited !== null && waited <= silenceLimit) return [];
    return [
      {
        state: "critical",
        message: `binlog archive: no segment archived${since === null ? "" : ` since its chain began ${since} (${humanDuration(waited!)} ago)`}: ${unit}`,
      },
    ];
  }
  const lag = status.lagSeconds;
  const lagText =
    lag === null ? "no transaction archived" : `the newest archived commit is ${humanDuration(lag)} old`;
  if (status.silentSeconds > silenceLimit) {
    return [
      {
        state: "critical",
        message: `binlog archive: silent — nothing uploaded for ${humanDuration(status.silentSeconds)} (${lagText}, RPO ${rpo} s): the archiver is down or cannot reach S3, or the server commits nothing (run a heartbeat); ${unit}`,
      },
    ];
  }
  if (lag === null || lag <= rpo) return [];
  return [
    {
      state: lag > 10 * rpo ? "critical" : "warning",
      message: `binlog archive: ${lagText}, above the RPO of ${rpo} s${lag > 10 * rpo ? " ten times over" : ""}: a replica behind its source, a slow upload or a full spool; ${unit}`,
    },
  ];
}

/** Objects of the archive that do not match their contract: status cannot judge past them. */
function damaged(scan: ArchiveScan): HealthReason[] {
  return scan.epochs.flatMap((e) =>
    [e.record, e.first, e.newest]
      .filter((r): r is { key: string; error: string } => r !== null && !("value" in r))
      .map((r) => ({
        state: "critical" as const,
        message: `binlog archive: s3://…/${r.key} is not valid (${r.error.split("\n")[0].slice(0, 200)}): restores cannot rely on epoch ${e.epoch}; look at the object and its previous versions`,
      })),
  );
}

function gapsOf(epochs: EpochScan[], ctx: ArchiveContext): BinlogGap[] {
  return epochs.flatMap((e) => {
    const record = valid(e.record);
    if (record === null || record.missing === null) return [];
    const after = ctx.newestVerified !== null && ctx.newestVerified.takenAt.toISOString() > record.startedAt;
    return [
      {
        epoch: e.epoch,
        foundAt: record.startedAt,
        missing: record.missing,
        resolvedBy: after ? ctx.newestVerified!.backupId : null,
      },
    ];
  });
}

/** One chain link per epoch, from its first to its newest complete segment. */
function linkOf(e: EpochScan): ChainLink | null {
  const first = valid(e.first);
  const newest = valid(e.newest);
  if (first === null || newest === null) return null;
  return {
    host: newest.host,
    epoch: newest.epoch,
    sequence: newest.sequence,
    server: newest.server,
    gtid: { before: first.gtid.before, after: newest.gtid.after, first: null, last: null, set: null },
    transactions: {
      // The planner skips links without transactions; how many there are is not read.
      count: first.gtid.before === newest.gtid.after ? 0 : 1,
      firstCommitAt: first.transactions.firstCommitAt ?? first.events.firstAt,
      lastCommitAt: e.newestCommitAt ?? newest.events.lastAt,
    },
  };
}

/** The window (restorableWindows, as `restore list`) that reaches the newest archived commit. */
function archivedWindow(
  epochs: EpochScan[],
  newest: BinlogSegmentEntry,
  newestCommitAt: string | null,
  ctx: ArchiveContext,
): RecoveryWindow | null {
  const links = epochs.map(linkOf).filter((l): l is ChainLink => l !== null);
  const flavor = newest.server.flavor;
  const end = parseState(flavor, newest.gtid.after);
  const snapshots = ctx.snapshots.filter((s) => s.flavor === flavor);
  const reaching = restorableWindows([{ entries: links }], snapshots).find((w) =>
    parseState(flavor, w.toGtid).covers(end),
  );
  if (reaching === undefined) return null;
  const to = newestCommitAt !== null && newestCommitAt > reaching.to ? newestCommitAt : reaching.to;
  return {
    from: reaching.from,
    to,
    seconds: Math.max(0, Math.round((Date.parse(to) - Date.parse(reaching.from)) / 1000)),
    fromBackupId: reaching.snapshots[0],
    toGtid: reaching.toGtid,
  };
}

function noWindow(ctx: ArchiveContext): HealthReason {
  return {
    state: "warning",
    message: `binlog archive: no restorable window — no verified backup is continued by the archive (${ctx.snapshots.length} verified backup(s) looked at): a point-in-time restore is impossible until the next backup is verified; restore list shows the archive's chains`,
  };
}

function healthyLine(status: BinlogArchiveStatus): string {
  const lag = status.lagSeconds === null ? "nothing archived yet" : `lag ${humanDuration(status.lagSeconds)}`;
  const window = status.archivedWindow;
  return (
    `binlog archive: ${lag} (RPO ${status.rpoSeconds} s)` +
    (window === null ? "" : `, restorable from ${window.from} (${humanDuration(window.seconds)})`)
  );
}
