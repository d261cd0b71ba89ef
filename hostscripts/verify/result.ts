import type {
  DrillVerdict,
  CapturedPosition,
  CheckName,
  CheckResult,
  RestoredTable,
  Verdict,
  VerificationReport,
} from "../../contracts";
import { ExitCode } from "../common/errors";
import { describeDrift } from "../restore/verdicts";
import type { RestoredPosition } from "./checks";
import type { RestoreTimings } from "./report";
import type { ChainResult } from "./chain";
import type { DrillResult } from "./drill";
import type { SegmentResult } from "./segment";

/**
 * What became of one message (DESIGN §1 steps 10–15), as `--json` prints it, the exit code of `--once`, and
 * the lines a person reads. The outcomes are described with the daemon (daemon.ts).
 */

/** How one message (or the lack of one) ended. */
export type Outcome =
  | "verified"
  | "failed"
  | "unsupported"
  | "rejected"
  | "infrastructure"
  | "interrupted"
  | "idle"
  /** A binlog segment whose predecessor is not in the archive yet: put back, no verdict (segment.ts). */
  | "deferred";

/** The result of one verification, as `--json` prints it (the demo and the benchmark read it). */
export interface VerificationResult {
  outcome: Outcome;
  verdict: Verdict | null;
  failedCheck: CheckName | null;
  backupId: string | null;
  manifestKey: string | null;
  /** Where `verification.json` was written, when it was. */
  reportKey: string | null;
  timings: RestoreTimings;
  position: { captured: CapturedPosition | null; restored: RestoredPosition | null };
  tables: RestoredTable[];
  checks: CheckResult[];
  /** For rejected and infrastructure outcomes: what went wrong and what to do. */
  error: { message: string; hint: string } | null;
  /** The `verification.json` written for a verdict, as written. */
  report: VerificationReport | null;
  /** True when the backup already had a verdict: nothing was restored, `report` is the stored one. */
  alreadyReported: boolean;
  /** For a `binlog.archived` message: the segment's outcome and verdict (the backup fields stay empty). */
  segment: SegmentResult | null;
  /** For a verified backup: the proof of the chain from the verified snapshot before it, if there is one. */
  chain?: ChainResult | null;
  /** After a proven chain: the restore drill to a random point inside it, if one ran or was stored. */
  drill?: DrillResult | null;
}

/** Timings of a restore that has not run (yet). */
export const noTimings = (): RestoreTimings => ({
  downloadExtractSeconds: 0,
  recoverySeconds: 0,
  checksSeconds: 0,
  restoreSeconds: 0,
});

/** A result with nothing in it but its outcome; callers fill in what they know. */
export function emptyResult(outcome: Outcome): VerificationResult {
  return {
    outcome,
    verdict: null,
    failedCheck: null,
    backupId: null,
    manifestKey: null,
    reportKey: null,
    timings: noTimings(),
    position: { captured: null, restored: null },
    tables: [],
    checks: [],
    error: null,
    report: null,
    alreadyReported: false,
    segment: null,
  };
}

/** The result of a `binlog.archived` message. */
export function segmentResult(segment: SegmentResult): VerificationResult {
  return {
    ...emptyResult(segment.outcome),
    verdict: segment.verdict?.verdict ?? null,
    alreadyReported: segment.alreadyReported,
    segment,
  };
}

/** The result a report stands for. */
export function resultOfReport(report: VerificationReport, reportKey: string): VerificationResult {
  return {
    outcome: report.verdict,
    verdict: report.verdict,
    failedCheck: report.failedCheck,
    backupId: report.backupId,
    manifestKey: report.manifestKey,
    reportKey,
    timings: report.timings,
    position: { captured: null, restored: null },
    tables: report.tables,
    checks: report.checks,
    error: null,
    report,
    alreadyReported: false,
    segment: null,
  };
}

/**
 * The exit code of an outcome (`--once`): 0 for verified, idle or interrupted (a stop asked for by systemd
 * is not a failure), VerificationFailed for a failed or unsupported verdict, VerifierInfrastructure for
 * rejected and infrastructure outcomes (the message was not handled and stays in the queue).
 */
export function exitCodeOf(outcome: Outcome): number {
  switch (outcome) {
    case "verified":
    case "idle":
    case "interrupted":
    case "deferred":
      return ExitCode.Ok;
    case "failed":
    case "unsupported":
      return ExitCode.VerificationFailed;
    default:
      return ExitCode.VerifierInfrastructure;
  }
}

/** The lines a person reads for a result. */
export function summarizeResult(result: VerificationResult): string {
  if (result.segment !== null) return summarizeSegment(result.segment);
  switch (result.outcome) {
    case "idle":
      return "no backup to verify: the queue stayed empty";
    case "rejected":
      return `rejected an invalid message: ${result.error?.message}\n${result.error?.hint}`;
    case "infrastructure":
      return `verification of ${result.backupId} did not finish (will be retried): ${result.error?.message}\n${result.error?.hint}`;
    case "interrupted":
      return `${result.error?.message}\n${result.error?.hint}`;
    case "unsupported":
      return `backup ${result.backupId}: UNSUPPORTED — ${result.report?.unsupportedReason}\nrun a verifier with that server (mysqld.binary) for this cluster`;
    default:
      return summarizeVerdict(result);
  }
}

/** A segment's verdict, or why it has none yet. */
function summarizeSegment(segment: SegmentResult): string {
  const v = segment.verdict;
  if (v === null)
    return `binlog segment ${segment.verdictKey}: deferred (its predecessor is not in the archive yet)`;
  const failed = v.checks.find((c) => !c.passed);
  return [
    `binlog segment ${v.host}/${v.epoch} #${v.sequence}: ${v.verdict.toUpperCase()}${failed ? ` — check "${failed.name}" failed: ${failed.detail}` : ""}${segment.alreadyReported ? " (verdict already written)" : ""}`,
    `${v.events} events, ${v.transactions} transactions, GTID ${v.gtid?.before || "-"} → ${v.gtid?.after ?? "-"}; verdict ${segment.verdictKey}`,
  ].join("\n");
}

/** A verified or failed backup: the verdict, the timings, the position, the checks and what drifted. */
function summarizeVerdict(result: VerificationResult): string {
  const failed = result.checks.find((c) => !c.passed);
  const t = result.timings;
  return [
    `backup ${result.backupId}: ${result.outcome.toUpperCase()}${failed ? ` — check "${failed.name}" failed: ${failed.detail}` : ""}`,
    `restore ${t.restoreSeconds}s (download+extract ${t.downloadExtractSeconds}s, recovery ${t.recoverySeconds}s, checks ${t.checksSeconds}s)`,
    `GTID captured ${result.position.captured?.gtidBinlogPos ?? result.position.captured?.gtidExecuted ?? "-"}, restored ${result.position.restored?.gtidBinlogPos ?? result.position.restored?.gtidExecuted ?? "-"}`,
    `checks: ${result.checks.map((c) => `${c.name} ${c.passed ? "ok" : "FAILED"}`).join(", ")}; ${result.tables.length} tables, ${result.tables.reduce((s, x) => s + (x.rows ?? 0), 0)} rows`,
    ...(result.report?.drift
      ? [
          `drift: ${describeDrift(result.report.drift) ?? `none since ${result.report.drift.previousBackupId ?? "(no earlier verified backup)"}`}`,
        ]
      : []),
    ...(result.report?.recoveryPoint
      ? [
          `recovery point: ${result.report.recoveryPoint.lagSeconds}s before the lock (${result.report.recoveryPoint.table})`,
        ]
      : []),
    ...(result.chain ? [describeChain(result.chain)] : []),
    ...(result.drill ? [describeDrill(result.drill.verdict)] : []),
  ].join("\n");
}

/** `pitr-verified A → B (…)`, or what failed. */
export function describeChain(chain: ChainResult): string {
  const v = chain.verdict;
  const replay = v.replay
    ? `replay ${v.replay.seconds}s, ${v.replay.transactions} transactions from ${v.replay.segments} segments, `
    : "";
  return v.failure === null
    ? `pitr-verified ${v.from.backupId} → ${v.to.backupId} (${replay}${v.tablesCompared} table checksums equal, ${v.seconds}s in all)`
    : `pitr-FAILED ${v.from.backupId} → ${v.to.backupId} (${v.failure.kind}): ${v.failure.detail}`;
}

/** `pitr-drill passed: … at T (seed …) in …s to queryable`, or what failed. */
export function describeDrill(v: DrillVerdict): string {
  const point = `${v.point.at} (seed ${v.point.seed}) from ${v.from.backupId}`;
  return v.failure === null
    ? `pitr-drill passed: restored to ${point}, queryable after ${v.restore?.secondsToQueryable}s at ${v.expected.gtid}, ` +
        `${v.restore?.transactions} transactions replayed, CHECK TABLE OK on ${v.tablesChecked} tables`
    : `pitr-drill FAILED (${v.failure.kind}) restoring to ${point}: ${v.failure.detail}`;
}
