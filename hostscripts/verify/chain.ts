import { mkdtemp, rm } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import {
  RESTORE_ALONGSIDE_MIN_CORES,
  VERIFY_DEFAULTS,
  chainVerdictKey,
  type BackupCreatedMessage,
  type BackupManifest,
  type BackupRef,
  type ChainVerdict,
  type RestoreConfig,
  type ServerFlavor,
  type VerificationReport,
  type VerifyConfig,
} from "../../contracts";
import { PipelineError, messageOf } from "../common/errors";
import { parseState, sameState } from "../common/gtid-state";
import { listArchive } from "../restore/archive";
import { listBackups, type ListedBackup } from "../restore/list";
import { restoreBackup } from "../restore/restore";
import { chainMetrics, readChainVerdict } from "./chain-compare";
import {
  chainTarget,
  replayChain,
  verdictOf,
  waitForArchive,
  type ChainStart,
  type ChainStartKind,
  type ChainTarget,
  type Replayed,
} from "./chain-replay";
import { hasKept, keepsVerified, takeKept } from "./kept";
import { createVerdictOnce, fetchManifest } from "./objects";
import type { VerificationDeps } from "./verification";

export type { ChainStart, ChainStartKind } from "./chain-replay";

/**
 * The point-in-time chain proof (DESIGN §1 B4, issue 14): after snapshot B of a cluster is verified, the
 * verified snapshot A before it is in a scratch directory, the archived binlog is replayed onto it from
 * exactly A's GTID state up to B's (restore/pitr.ts: the same planning, segment proofs and applier as
 * `restore --until-gtid`), and the replayed server must hold B's GTID state and, table by table, the content
 * checksums B's verification.json recorded. The verdict is written once beside B
 * (`chain-verification.json`); a chain that already has one is not proven again.
 *
 * Where A comes from, cheapest first: the tree its own verification left, kept on this verifier's scratch
 * disk (kept.ts, `chain.keepVerified`), so that B's chain verdict follows B's own by the replay and the
 * comparison alone; otherwise A is restored again. Never A's server kept running: snapshots are a backup
 * interval apart (a day), and an instance held that long costs more than disk. A restore of A begins when B's
 * message arrives and runs alongside B's verification (beginChain) on a verifier with cores to spare; on 2
 * cores the two CPU-bound restores take as long together as in turn, and delay B's own verdict, so there A is
 * restored after B (`chain.restoreAlongside`). docs/pitr-proof.md has the figures of each.
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
  /**
   * Where A's tree came from: kept since A's verification (kept.ts), restored alongside B's verification, or
   * restored after B's verdict. Absent when the verdict was already written.
   */
  start?: ChainStartKind;
}

/** beginChain found no chain to prove: no binlog archive, or no verified snapshot before B. */
export const NO_CHAIN = "no-chain";

/**
 * Begins the chain proof alongside B's verification when a chain may be proven after it: enabled, none proven
 * yet, the cluster archives its binlog, and a verified snapshot A precedes B. On A's kept tree the replay
 * itself begins (towards the state B's manifest captured); otherwise, with `chain.restoreAlongside`, A's
 * restore. NO_CHAIN when there is none to prove (the proof after B's verdict does not look again); null when
 * nothing is begun, or the lookups fail (the proof after B's verdict makes them again, and says what is wrong).
 */
export async function beginChain(
  config: VerifyConfig,
  message: BackupCreatedMessage,
  ref: BackupRef,
  deps: VerificationDeps,
): Promise<ChainStart | typeof NO_CHAIN | null> {
  const settings = { ...VERIFY_DEFAULTS.chain, ...config.chain };
  const alongside = settings.restoreAlongside ?? availableParallelism() >= RESTORE_ALONGSIDE_MIN_CORES;
  const replay = settings.replayAlongside && keepsVerified(config);
  if (!settings.enabled || (!alongside && !replay)) return null;
  try {
    if ((await readChainVerdict(deps.s3, message.bucket, chainVerdictKey(ref))) !== null) return null;
    const found = await chainStartOf(config, message, ref, deps);
    if (found === null) return NO_CHAIN;
    const { from, backups, restoreConfig } = found;
    // A's tree kept since its verification: the replay can begin at once, or after B's verdict.
    if (await hasKept(config, message.bucket, ref, from))
      return replay ? await replayAlongside(config, message, ref, found, deps) : null;
    if (!alongside) return null;
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
    return { from, backups, target, dir: target, kind: "alongside", restored, abort, startedAt };
  } catch (error) {
    deps.log.warn(`the chain's start is not restored alongside: ${messageOf(error)}`, {
      hint: "the chain is proven after the snapshot's verification instead",
    });
    return null;
  }
}

/** Ends a chain start: its restore and replay stopped (or finished) and its directory gone. */
export async function endChainStart(start: ChainStart | typeof NO_CHAIN | null): Promise<void> {
  if (start === null || start === NO_CHAIN) return;
  start.abort.abort();
  await start.restored.catch(() => undefined);
  await start.early?.replayed.catch(() => undefined);
  await rm(start.dir, { recursive: true, force: true, maxRetries: 3 });
}

/**
 * Takes A's kept tree and begins the replay onto it while B is verified, towards the GTID state B's manifest
 * captured under its lock (B's "position" check holds B's recovered state to it; should they differ, the
 * proof after B's verdict restores A again). The archive wait comes first, as after B's verdict. Null, with the
 * kept tree left for the proof after B's verdict, when B's manifest names no exact state (a lock-free snapshot:
 * its state is what B recovers to) or cannot be read (B's verification says why).
 */
async function replayAlongside(
  config: VerifyConfig,
  message: BackupCreatedMessage,
  ref: BackupRef,
  found: { from: ListedBackup; backups: ListedBackup[]; restoreConfig: RestoreConfig },
  deps: VerificationDeps,
): Promise<ChainStart | null> {
  const manifest = await fetchManifest(deps.s3, message, ref, { manifest: null, archive: null }).catch(
    () => null,
  );
  const to = manifest === null ? null : capturedEnd(manifest, ref);
  if (to === null) return null;
  const start = await keptStart(config, message.bucket, ref, found, deps.log);
  if (start === null) return null;
  const stop = () => start.abort.abort(deps.signal?.reason);
  deps.signal?.addEventListener("abort", stop, { once: true });
  const signal = start.abort.signal;
  const log = deps.log.with({ chain: `${found.from.backupId} → ${ref.backupId}` });
  log.info("replaying onto the chain's start alongside the snapshot's verification", { gtid: to.end.gtid });
  const replayed = (async () => {
    await waitForArchive(config, message.bucket, ref, to, { ...deps, signal });
    return replayChain(found.restoreConfig, found.backups, found.from, to, { ...deps, log, signal }, start);
  })();
  // Awaited by the proof, or by endChainStart; never left to reject unobserved.
  replayed.catch(() => undefined).finally(() => deps.signal?.removeEventListener("abort", stop));
  return { ...start, kind: "kept-alongside", early: { gtid: to.end.gtid, replayed } };
}

/** B's end of the chain as its manifest captured it under a commit-holding lock; null for a lock-free one. */
function capturedEnd(manifest: BackupManifest, ref: BackupRef): ChainTarget | null {
  const { position } = manifest;
  if (manifest.positionAfter !== undefined) return null;
  const flavor = manifest.server.flavor;
  const gtid = flavor === "mysql" ? position.gtidExecuted : position.gtidBinlogPos;
  return gtid ? chainTarget(ref, gtid, flavor) : null;
}

/** A chain start from A's kept tree (kept.ts), taken for the proof at hand; null when none is kept. */
async function keptStart(
  config: VerifyConfig,
  bucket: string,
  ref: BackupRef,
  found: { from: ListedBackup; backups: ListedBackup[] },
  log: VerificationDeps["log"],
): Promise<ChainStart | null> {
  const startedAt = performance.now();
  const taken = await takeKept(config, bucket, ref, found.from, ref.backupId, log);
  if (taken === null) return null;
  return {
    ...found,
    target: taken.restored.target,
    dir: taken.dir,
    kind: "kept",
    restored: Promise.resolve(taken.restored),
    abort: new AbortController(),
    startedAt,
  };
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
  const from = backups.find((b) => b.complete && b.verdict === "verified" && b.backupId < ref.backupId);
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
  let begun = start;
  if (
    begun?.early !== undefined &&
    !sameState(parseState(to.flavor, begun.early.gtid), parseState(to.flavor, to.end.gtid))
  ) {
    deps.log.warn(
      `snapshot ${ref.backupId} recovered to ${to.end.gtid}, not to ${begun.early.gtid} as its manifest says: the replay begun alongside its verification is dropped`,
      { hint: "the chain is proven from the previous snapshot restored again" },
    );
    await endChainStart(begun);
    begun = null;
  }
  const found =
    begun !== null
      ? { from: begun.from, backups: begun.backups, restoreConfig: restoreConfigOf(config, message, ref) }
      : await chainStartOf(config, message, ref, deps);
  if (found === null) return null;
  let from: ChainStart | null = begun;
  let replayed = begun?.early === undefined ? null : await earlyReplay(begun, deps);
  if (replayed === null) {
    if (from?.early !== undefined) from = null;
    await waitForArchive(config, message.bucket, ref, to, deps);
    // Taken only now (after B's verdict, the path's own): B verified and its archive there.
    from ??= await keptStart(config, message.bucket, ref, found, deps.log);
    replayed = await replayChain(found.restoreConfig, found.backups, found.from, to, deps, from);
  }
  const verdict = verdictOf(found.restoreConfig, found.from, to, report, replayed, deps);
  const published = await publish(config, message.bucket, key, verdict, deps);
  return published.alreadyReported ? published : { ...published, start: from?.kind ?? "after" };
}

/**
 * What the replay begun alongside B's verification found; null when it stopped on the verifier's own trouble
 * (S3, the archive wait counted from B's arrival): the proof is made again after B's verdict, with A restored.
 * SIGTERM is rethrown.
 */
async function earlyReplay(start: ChainStart, deps: VerificationDeps): Promise<Replayed | null> {
  try {
    return await start.early!.replayed;
  } catch (error) {
    if (deps.signal?.aborted) throw error;
    deps.log.warn(`the replay begun alongside the snapshot's verification stopped: ${messageOf(error)}`, {
      hint: "the chain is proven again from the previous snapshot restored",
    });
    await endChainStart(start);
    return null;
  }
}

const restoreConfigOf = (
  config: VerifyConfig,
  message: BackupCreatedMessage,
  ref: BackupRef,
): RestoreConfig => ({
  ...config,
  restore: { bucket: message.bucket, prefix: ref.prefix, cluster: ref.cluster },
});

/** B's end of the chain: the GTID state its verifier saw it recover to, and when it was taken. */
function endOf(report: VerificationReport): ChainTarget | null {
  const recovered = report.position.recovered;
  const flavor: ServerFlavor = recovered?.gtidExecuted ? "mysql" : "mariadb";
  const gtid = recovered?.gtidBinlogPos ?? recovered?.gtidExecuted ?? report.position.restored?.gtid ?? null;
  return gtid === null ? null : chainTarget(report, gtid, flavor);
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
