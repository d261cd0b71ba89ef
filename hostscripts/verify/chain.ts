import { mkdtemp, rm } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import {
  RESTORE_ALONGSIDE_MIN_CORES,
  VERIFY_DEFAULTS,
  backupIdTime,
  chainVerdictKey,
  type BackupCreatedMessage,
  type BackupRef,
  type ChainEnd,
  type ChainFailure,
  type ChainVerdict,
  type RestoreConfig,
  type ServerFlavor,
  type VerificationReport,
  type VerifyConfig,
} from "../../contracts";
import { PipelineError, messageOf } from "../common/errors";
import { parseState, sameState } from "../common/gtid-state";
import { listArchive, readArchive } from "../restore/archive";
import { listBackups, type ListedBackup } from "../restore/list";
import { restoreToPoint, type PitrResult } from "../restore/pitr";
import { restoreBackup, type RestoreResult } from "../restore/restore";
import { chainMetrics, compareChecksums, readChainVerdict, replayedChecksums } from "./chain-compare";
import { createVerdictOnce } from "./objects";
import type { VerificationDeps } from "./verification";

/**
 * The point-in-time chain proof (DESIGN §1 B4, issue 14): after snapshot B of a cluster is verified, the
 * verified snapshot A before it is restored again into a scratch directory, the archived binlog is replayed
 * onto it from exactly A's GTID state up to B's (restore/pitr.ts: the same planning, segment proofs and
 * applier as `restore --until-gtid`), and the replayed server must hold B's GTID state and, table by table,
 * the content checksums B's verification.json recorded. The verdict is written once beside B
 * (`chain-verification.json`); a chain that already has one is not proven again.
 *
 * A is restored again rather than kept running since its own verification: snapshots are a backup interval
 * apart (a day), and holding a scratch server and its disk that long on a fleet that scales to zero costs
 * more, and is more fragile, than one more download and extract (docs/pitr-proof.md has the figures). That
 * restore begins when B's message arrives and runs alongside B's verification (beginChain) on a verifier with
 * cores to spare, so that B's chain verdict follows B's own by the replay and the comparison alone; on 2 cores
 * the two CPU-bound restores take as long together as in turn, and delay B's own verdict, so there A is
 * restored after B (`chain.restoreAlongside`).
 *
 * Blame as for snapshots: the archive or the data failing the proof (a gap, a damaged segment, a replay the
 * applier stops, tables that differ) is a failed verdict; the verifier's own trouble (S3 unreachable, the
 * scratch disk) is a PipelineError that leaves B's message to be retried, which proves the chain again.
 */

/** How a chain proof ended. */
export interface ChainResult {
  verdict: ChainVerdict;
  key: string;
  /** True when the verdict was already written: nothing was restored. */
  alreadyReported: boolean;
}

/**
 * A chain proof begun before B's verification (`chain.restoreAlongside`): the cluster's verified snapshot A
 * before B is being restored into a scratch directory of its own while B is. Whatever becomes of B, the
 * daemon ends it with {@link endChainStart}.
 */
export interface ChainStart {
  from: ListedBackup;
  backups: ListedBackup[];
  target: string;
  restored: Promise<RestoreResult>;
  abort: AbortController;
  /** `performance.now()` when A's restore began: the proof's seconds count from it. */
  startedAt: number;
}

/** beginChain found no chain to prove: no binlog archive, or no verified snapshot before B. */
export const NO_CHAIN = "no-chain";

/**
 * Begins restoring A alongside B's verification when a chain may be proven after it: enabled, none proven
 * yet, the cluster archives its binlog, and a verified snapshot precedes B. NO_CHAIN when there is none to
 * prove (the proof after B's verdict does not look again); null when it is not restored alongside, or the
 * lookups fail (the proof after B's verdict makes them again, and says what is wrong).
 */
export async function beginChain(
  config: VerifyConfig,
  message: BackupCreatedMessage,
  ref: BackupRef,
  deps: VerificationDeps,
): Promise<ChainStart | typeof NO_CHAIN | null> {
  const settings = { ...VERIFY_DEFAULTS.chain, ...config.chain };
  const alongside = settings.restoreAlongside ?? availableParallelism() >= RESTORE_ALONGSIDE_MIN_CORES;
  if (!settings.enabled || !alongside) return null;
  try {
    if ((await readChainVerdict(deps.s3, message.bucket, chainVerdictKey(ref))) !== null) return null;
    const found = await chainStartOf(config, message, ref, deps);
    if (found === null) return NO_CHAIN;
    const { from, backups, restoreConfig } = found;
    const startedAt = performance.now();
    const target = await mkdtemp(join(config.scratchDir, `chain-${ref.backupId}-`));
    const abort = new AbortController();
    const stop = () => abort.abort(deps.signal?.reason);
    deps.signal?.addEventListener("abort", stop, { once: true });
    const log = deps.log.with({ chain: `${from.backupId} → ${ref.backupId}` });
    log.info("restoring the chain's start alongside the snapshot's verification", { from: from.backupId });
    const restored = restoreBackup(restoreConfig, from, target, false, {
      ...deps,
      log,
      signal: abort.signal,
    });
    // Awaited by the proof, or by endChainStart; never left to reject unobserved.
    restored.catch(() => undefined).finally(() => deps.signal?.removeEventListener("abort", stop));
    return { from, backups, target, restored, abort, startedAt };
  } catch (error) {
    deps.log.warn(`the chain's start is not restored alongside: ${messageOf(error)}`, {
      hint: "the chain is proven after the snapshot's verification instead",
    });
    return null;
  }
}

/** Ends a chain start: its restore stopped (or finished) and its directory gone. */
export async function endChainStart(start: ChainStart | typeof NO_CHAIN | null): Promise<void> {
  if (start === null || start === NO_CHAIN) return;
  start.abort.abort();
  await start.restored.catch(() => undefined);
  await rm(start.target, { recursive: true, force: true, maxRetries: 3 });
}

/** A, the backups listed, and the restore config of the chain ending at B; null when there is none to prove. */
async function chainStartOf(
  config: VerifyConfig,
  message: BackupCreatedMessage,
  ref: BackupRef,
  deps: VerificationDeps,
): Promise<{ from: ListedBackup; backups: ListedBackup[]; restoreConfig: RestoreConfig } | null> {
  const restoreConfig = restoreConfigOf(config, message, ref);
  // A cluster without point-in-time recovery has no archive, and no chain to prove.
  if ((await listArchive(deps.s3, message.bucket, ref.prefix, ref.cluster)).length === 0) {
    deps.log.info(`cluster ${ref.cluster} has no binlog archive: no chain to prove`);
    return null;
  }
  const backups = await listBackups(deps.s3, restoreConfig.restore);
  const from = backups.find(
    (b) => b.complete && b.verdict === "verified" && b.backupId < ref.backupId && b.backupId !== ref.backupId,
  );
  if (from === undefined) {
    deps.log.info(`no verified snapshot of ${ref.cluster} before ${ref.backupId}: no chain to prove`);
    return null;
  }
  return { from, backups, restoreConfig };
}

/**
 * Proves the chain that ends at B (just verified); null when there is none to prove. `start`, when given, is
 * what beginChain found: A's restore begun alongside B's verification, which the caller ends afterwards
 * whether it was used or not, or NO_CHAIN.
 */
export async function proveChain(
  config: VerifyConfig,
  message: BackupCreatedMessage,
  ref: BackupRef,
  report: VerificationReport,
  deps: VerificationDeps,
  start: ChainStart | typeof NO_CHAIN | null = null,
): Promise<ChainResult | null> {
  if (!(config.chain?.enabled ?? VERIFY_DEFAULTS.chain.enabled) || report.verdict !== "verified") return null;
  const key = chainVerdictKey(ref);
  const stored = await readChainVerdict(deps.s3, message.bucket, key);
  if (stored !== null) return { verdict: stored, key, alreadyReported: true };
  const to = endOf(report);
  if (to === null || !report.tables.some((t) => typeof t.checksum === "number")) {
    deps.log.info(
      `no chain to prove up to ${ref.backupId}: its report records no GTID state or no checksums`,
    );
    return null;
  }
  if (start === NO_CHAIN) return null;
  const found =
    start !== null
      ? { from: start.from, backups: start.backups, restoreConfig: restoreConfigOf(config, message, ref) }
      : await chainStartOf(config, message, ref, deps);
  if (found === null) return null;
  await waitForArchive(config, message.bucket, ref, to, deps);
  const verdict = await prove(
    found.restoreConfig,
    found.backups,
    found.from,
    to.end,
    to.flavor,
    report,
    deps,
    start,
  );
  return publish(config, message.bucket, key, verdict, deps);
}

const restoreConfigOf = (
  config: VerifyConfig,
  message: BackupCreatedMessage,
  ref: BackupRef,
): RestoreConfig => ({
  ...config,
  restore: { bucket: message.bucket, prefix: ref.prefix, cluster: ref.cluster },
});

/**
 * Waits (up to `chain.archiveWaitSeconds`) until an archived segment reaches B's GTID state: a verifier may
 * finish B before the archiver has shipped the transactions up to B (its RPO, or a lagging archiver). Still
 * short of it, the proof is the verifier's to retry: B's message stays and comes back after its visibility
 * timeout, finds B's verdict and proves the chain then; the archiver's lag alarm says why.
 */
async function waitForArchive(
  config: VerifyConfig,
  bucket: string,
  ref: BackupRef,
  to: { end: ChainEnd; flavor: ServerFlavor },
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

/** B's end of the chain: the GTID state its verifier saw it recover to, and when it was taken. */
function endOf(report: VerificationReport): { end: ChainEnd; flavor: ServerFlavor } | null {
  const recovered = report.position.recovered;
  const flavor: ServerFlavor = recovered?.gtidExecuted ? "mysql" : "mariadb";
  const gtid = recovered?.gtidBinlogPos ?? recovered?.gtidExecuted ?? report.position.restored?.gtid ?? null;
  if (gtid === null) return null;
  const takenAt = backupIdTime(report.backupId).toISOString();
  return { end: { backupId: report.backupId, host: report.host, gtid, takenAt }, flavor };
}

/** Restores A, replays to B's GTID state, compares; the verdict (not yet written). */
async function prove(
  config: RestoreConfig,
  backups: ListedBackup[],
  a: ListedBackup,
  to: ChainEnd,
  flavor: ServerFlavor,
  report: VerificationReport,
  deps: VerificationDeps,
  start: ChainStart | null,
): Promise<ChainVerdict> {
  const started = performance.now();
  const log = deps.log.with({ chain: `${a.backupId} → ${to.backupId}` });
  log.info("proving the point-in-time chain", {
    from: a.backupId,
    to: to.backupId,
    gtid: to.gtid,
    restoredAlongside: start !== null,
  });
  const target = start?.target ?? (await mkdtemp(join(config.scratchDir, `chain-${to.backupId}-`)));
  let checksums = new Map<string, number | null>();
  let replayed: PitrResult | null = null;
  let failure: ChainVerdict["failure"] = null;
  try {
    replayed = await restoreToPoint(
      config,
      backups,
      {
        target,
        until: { kind: "gtid", gtid: parseState(flavor, to.gtid) },
        force: false,
        backupId: a.backupId,
        inspect: async (conn) => void (checksums = await replayedChecksums(conn)),
        prepared: start?.restored,
      },
      { s3: deps.s3, log, $: deps.$, signal: deps.signal },
    );
  } catch (error) {
    // SIGTERM: whatever the cut restore or replay threw says nothing about the archive (B's message stays).
    if (deps.signal?.aborted) throw error;
    failure = blame(error);
  } finally {
    if (start !== null) await endChainStart(start);
    else await rm(target, { recursive: true, force: true, maxRetries: 3 });
  }
  const compared = compareChecksums(report.tables, checksums);
  if (failure === null && replayed !== null)
    failure = judge(flavor, replayed.pitr.reachedGtid, to.gtid, compared.differing);
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
    to,
    verdict: failure === null ? "verified" : "failed",
    failure,
    replay: replayed && {
      seconds: replayed.pitr.replaySeconds,
      transactions: replayed.pitr.transactions,
      segments: replayed.pitr.segments,
      reachedGtid: replayed.pitr.reachedGtid,
    },
    tablesCompared: replayed === null ? 0 : compared.compared,
    seconds: Math.round((performance.now() - (start?.startedAt ?? started)) / 10) / 100,
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

/** Writes the verdict once (a duplicate's verdict stands), emits its metrics and logs it. */
async function publish(
  config: VerifyConfig,
  bucket: string,
  key: string,
  verdict: ChainVerdict,
  deps: VerificationDeps,
): Promise<ChainResult> {
  const raced = await createVerdictOnce(deps.s3, verdict, key, config.s3?.kmsKeyId, () =>
    readChainVerdict(deps.s3, bucket, key),
  );
  if (raced !== null) return { verdict: raced, key, alreadyReported: true };
  await deps.metrics.put(chainMetrics(verdict, deps.now())).catch((error: unknown) => {
    throw new PipelineError(
      "VerifierInfrastructure",
      `cannot emit the chain verdict's metrics: ${messageOf(error)}`,
      "check the metrics sink; the chain verdict is written",
      { cause: error },
    );
  });
  const line = `pitr-${verdict.verdict} ${verdict.from.backupId} → ${verdict.to.backupId}`;
  if (verdict.failure === null)
    deps.log.info(line, {
      key,
      replaySeconds: verdict.replay?.seconds,
      transactions: verdict.replay?.transactions,
      tablesCompared: verdict.tablesCompared,
      seconds: verdict.seconds,
    });
  else deps.log.error(`${line}: ${verdict.failure.detail}`, { key, failure: verdict.failure.kind });
  return { verdict, key, alreadyReported: false };
}
