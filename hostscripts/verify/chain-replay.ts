import { mkdtemp, rm } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import {
  VERIFY_DEFAULTS,
  backupIdTime,
  type BackupRef,
  type ChainEnd,
  type ChainFailure,
  type ChainVerdict,
  type RestoreConfig,
  type ServerFlavor,
  type VerificationReport,
  type VerifyConfig,
} from "../../contracts";
import { PipelineError } from "../common/errors";
import { parseState, sameState } from "../common/gtid-state";
import { listArchive, readArchive } from "../restore/archive";
import type { ListedBackup } from "../restore/list";
import { restoreToPoint, type PitrResult } from "../restore/pitr";
import type { RestoreResult } from "../restore/restore";
import { compareChecksums, replayedChecksums } from "./chain-compare";
import type { VerificationDeps } from "./verification";

/**
 * The chain proof's replay and judgement (chain.ts decides where A comes from and when): the wait for the
 * archive to reach B, the replay onto A with `restore --until-gtid`'s machinery, every table's checksum read
 * there, and the verdict judged against B's report, with blame split between the archive or the data (a
 * failed verdict) and the verifier's own trouble (rethrown).
 */

/**
 * Where a chain proof's A came from (`ChainResult.start`): its kept tree, replayed alongside B's verification
 * or after B's verdict; or restored again, alongside B's verification or after B's verdict.
 */
export type ChainStartKind = "kept-alongside" | "kept" | "alongside" | "after";

/**
 * A chain proof begun before B's verification (`chain.restoreAlongside`): the cluster's verified snapshot A
 * before B is being restored into a scratch directory of its own while B is. Whatever becomes of B, the
 * daemon ends it with `endChainStart` (chain.ts).
 */
export interface ChainStart {
  from: ListedBackup;
  backups: ListedBackup[];
  /** Where A's tree is, and the scratch directory that holds it (removed when the proof ends). */
  target: string;
  dir: string;
  kind: ChainStartKind;
  restored: Promise<RestoreResult>;
  abort: AbortController;
  /** `performance.now()` when A's restore began: the proof's seconds count from it. */
  startedAt: number;
  /**
   * On A's kept tree, the replay itself begun alongside B's verification: towards the GTID state B's manifest
   * captured under its lock, which B's verification must find B recovered to (its "position" check).
   */
  early?: { gtid: string; replayed: Promise<Replayed> };
}

/** B's end of the chain (where the replay must end, and when B was taken) and its server's GTID flavor. */
export interface ChainTarget {
  end: ChainEnd;
  flavor: ServerFlavor;
}

/** The chain's end at snapshot B in the GTID state `gtid`. */
export function chainTarget(
  b: { backupId: string; host: string },
  gtid: string,
  flavor: ServerFlavor,
): ChainTarget {
  const takenAt = backupIdTime(b.backupId).toISOString();
  return { end: { backupId: b.backupId, host: b.host, gtid, takenAt }, flavor };
}

/** What the replay onto A found, before it is judged against B's report. */
export interface Replayed {
  replayed: PitrResult | null;
  /** The archive's or the data's failure (a verdict); null when the replay reached its end. */
  failure: ChainVerdict["failure"];
  /** Every table's checksum on the replayed server. */
  checksums: Map<string, number | null>;
  /** `performance.now()` when the proof began (A's restore, or taking its kept tree): its seconds count from it. */
  startedAt: number;
}

/**
 * Waits (up to `chain.archiveWaitSeconds`) until an archived segment reaches B's GTID state: a verifier may
 * finish B before the archiver has shipped the transactions up to B (its RPO, or a lagging archiver). Still
 * short of it, the proof is the verifier's to retry: B's message stays and comes back after its visibility
 * timeout, finds B's verdict and proves the chain then; the archiver's lag alarm says why.
 */
export async function waitForArchive(
  config: VerifyConfig,
  bucket: string,
  ref: BackupRef,
  to: ChainTarget,
  deps: VerificationDeps,
): Promise<void> {
  const target = parseState(to.flavor, to.end.gtid);
  const waitMs = (config.chain?.archiveWaitSeconds ?? VERIFY_DEFAULTS.chain.archiveWaitSeconds) * 1000;
  const since = Date.parse(to.end.takenAt) - 3600_000;
  const deadline = performance.now() + waitMs;
  for (;;) {
    const listed = await listArchive(deps.s3, bucket, ref.prefix, ref.cluster);
    const epochs = await readArchive(deps.s3, bucket, listed, (s) => s.firstAt.getTime() >= since);
    const reached = epochs.some((e) =>
      e.entries.some((entry) => parseState(to.flavor, entry.gtid.after).covers(target)),
    );
    if (reached) return;
    if (performance.now() >= deadline || deps.signal?.aborted)
      throw new PipelineError(
        "VerifierInfrastructure",
        `the binlog archive of ${ref.cluster} does not reach snapshot ${ref.backupId}'s GTID state ${to.end.gtid} after ${waitMs / 1000}s: the chain cannot be proven yet`,
        "the archiver lags (see BinlogArchiveLagSeconds and its alarm); the message comes back after its visibility timeout and the chain is proven then",
      );
    await sleep(5000);
  }
}

/**
 * Replays the archive onto A (its tree from `start`, or restored here) up to B's GTID state and reads every
 * table's checksum there; the scratch directory is removed in every case.
 */
export async function replayChain(
  config: RestoreConfig,
  backups: ListedBackup[],
  a: ListedBackup,
  to: ChainTarget,
  deps: VerificationDeps,
  start: ChainStart | null,
): Promise<Replayed> {
  const startedAt = start?.startedAt ?? performance.now();
  const log = deps.log.with({ chain: `${a.backupId} → ${to.end.backupId}` });
  log.info("proving the point-in-time chain", {
    from: a.backupId,
    to: to.end.backupId,
    gtid: to.end.gtid,
    start: start?.kind ?? "after",
  });
  const target = start?.target ?? (await mkdtemp(join(config.scratchDir, `chain-${to.end.backupId}-`)));
  const found: Replayed = { replayed: null, failure: null, checksums: new Map(), startedAt };
  try {
    found.replayed = await restoreToPoint(
      config,
      backups,
      {
        target,
        until: { kind: "gtid", gtid: parseState(to.flavor, to.end.gtid) },
        force: false,
        backupId: a.backupId,
        inspect: async (conn) => void (found.checksums = await replayedChecksums(conn)),
        prepared: start?.restored,
      },
      { s3: deps.s3, log, $: deps.$, signal: deps.signal },
    );
  } catch (error) {
    // SIGTERM: whatever the cut restore or replay threw says nothing about the archive (B's message stays).
    if (deps.signal?.aborted) throw error;
    found.failure = blame(error);
  } finally {
    // A restore begun alongside may still run when the proof failed before awaiting it.
    start?.abort.abort();
    await start?.restored.catch(() => undefined);
    await rm(start?.dir ?? target, { recursive: true, force: true, maxRetries: 3 });
  }
  return found;
}

/** The chain's verdict (not yet written): the replay's end and every table against B's report. */
export function verdictOf(
  config: RestoreConfig,
  a: ListedBackup,
  to: ChainTarget,
  report: VerificationReport,
  { replayed, failure, checksums, startedAt }: Replayed,
  deps: VerificationDeps,
): ChainVerdict {
  const compared = compareChecksums(report.tables, checksums);
  const judged =
    failure ??
    (replayed === null ? null : judge(to.flavor, replayed.pitr.reachedGtid, to.end.gtid, compared.differing));
  return {
    formatVersion: 1,
    bucket: config.restore.bucket,
    cluster: config.restore.cluster,
    from: {
      backupId: a.backupId,
      host: a.host,
      gtid: replayed?.pitr.startGtid ?? "",
      takenAt: backupIdTime(a.backupId).toISOString(),
    },
    to: to.end,
    verdict: judged === null ? "verified" : "failed",
    failure: judged,
    replay: replayed && {
      seconds: replayed.pitr.replaySeconds,
      transactions: replayed.pitr.transactions,
      segments: replayed.pitr.segments,
      reachedGtid: replayed.pitr.reachedGtid,
    },
    tablesCompared: replayed === null ? 0 : compared.compared,
    seconds: Math.round((performance.now() - startedAt) / 10) / 100,
    verifiedAt: deps.now().toISOString(),
    verifier: { host: deps.hostname },
  };
}

/** The replay's end and the tables against B: the first difference is the failure. */
function judge(
  flavor: ServerFlavor,
  reached: string,
  expected: string,
  differing: string[],
): ChainVerdict["failure"] {
  if (!sameState(parseState(flavor, reached), parseState(flavor, expected)))
    return failureOf("gtid", `the replay ended at ${reached}, snapshot B holds ${expected}`);
  if (differing.length > 0)
    return {
      kind: "tables",
      detail: `${differing.length} table(s) differ from snapshot B: ${differing.join("; ")}`,
      missing: null,
      tables: differing.map((d) => d.slice(0, d.indexOf(" (")) || d),
    };
  return null;
}

const failureOf = (kind: ChainFailure, detail: string, missing: string | null = null) => ({
  kind,
  detail,
  missing,
  tables: [],
});

/**
 * What a failed restore or replay says about the chain. The archive's and the data's failures are verdicts;
 * anything else (S3, the scratch disk, a missing server binary) is rethrown: the verifier's trouble.
 */
function blame(error: unknown): ChainVerdict["failure"] {
  if (!(error instanceof PipelineError)) throw error;
  const text = error.message;
  if (error.kind === "PitrRefused") {
    const gap = /missing: (.+?); archived transactions resume/.exec(text);
    if (gap !== null) return failureOf("gap", text, gap[1]);
    if (/segment s3:\/\//.test(text) || /not a valid binlog archive object/.test(text))
      return failureOf("segment", text);
    return failureOf("replay", text);
  }
  if (error.kind === "VerificationFailed") return failureOf("replay", text);
  throw error;
}
