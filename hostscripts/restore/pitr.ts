import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { join } from "node:path";
import { VERIFY_DEFAULTS, type RestoreConfig } from "../../contracts";
import { PipelineError, messageOf } from "../common/errors";
import { mariadbBetween, mysqlBetween } from "../common/gtid";
import { findServerBinary } from "../common/server-binary";
import { formatGtid, lastPerDomain, parseState, sameState, type GtidState } from "../common/gtid-state";
import { listArchive, readArchive, type ListedEpoch, type ListedSegment } from "./archive";
import { planChain, type ChainPlan, type PitrTarget } from "../common/pitr-chain";
import type { ListedBackup } from "./list";
import { chooseStartingSnapshot, prefixOf, type StartingSnapshot } from "./point";
import { ReplayFailed, applyRelayLogs, replayServerOptions, writeRelayLogs, type RelayLogs } from "./replay";
import { restoreBackup, type RestoreDeps, type RestoreResult } from "./restore";
import {
  mapSourcePath,
  planScratchServer,
  StartupFailure,
  startScratchServer,
  tailFile,
  type ScratchServerPlan,
} from "./scratch-server";
import { downloadSegments, type VerifiedSegment } from "./segments";
import { selectTransactions, type ReplaySelection, type ReplayStop } from "./select";

/**
 * `restore --target DIR --until TIME|latest` / `--until-gtid GTID`: the newest verified snapshot before the
 * point, restored as `restore` does, then the archived binlog replayed from exactly the GTID state the
 * snapshot holds up to the point. In this order, so that nothing is replayed from an archive that cannot get
 * there: the chain is planned from the ledger (a gap refuses the restore, naming the missing GTIDs, unless
 * `--force` accepts stopping before it), every segment is downloaded and proven (size, sha256, every event's
 * CRC32), the snapshot is restored and started, its recovered GTID state checked, the transactions selected
 * from it, and only then applied (replay.ts). The server is shut down cleanly at the end.
 */

/** What was asked. */
export interface PitrRequest {
  target: string;
  until: PitrTarget;
  /** Empty the target first; accept stopping before a gap in the archive. */
  force: boolean;
  /** A named snapshot instead of the newest before the point. */
  backupId: string | null;
  /**
   * Runs on the restored server at the point, before it is shut down (the verifier's chain proof reads its
   * tables there). Defaults to none.
   */
  inspect?: (conn: Session) => Promise<void>;
  /**
   * The named snapshot's restore into `target`, already under way (the verifier's chain proof begins it
   * while B is verified): awaited in place of restoring it here. The caller owns it, and the target, when
   * this throws before awaiting it.
   */
  prepared?: Promise<RestoreResult>;
}

/** What `restore --until` did, as `--json` prints it. */
export interface PitrResult extends RestoreResult {
  pitr: {
    /** The point asked for, as given. */
    until: string;
    /** The GTID state the restored server ended at, and its last transaction. */
    reachedGtid: string;
    lastGtid: string | null;
    /** Commit time of the last replayed transaction (the snapshot's own point when none was replayed). */
    lastCommitAt: string | null;
    startGtid: string;
    segments: number;
    transactions: number;
    replaySeconds: number;
    /** Transactions per second of the apply. */
    replayRate: number;
    /** With --force past a gap: the GTIDs that were not restored. */
    lost: string | null;
  };
}

const describeTarget = (t: PitrTarget) =>
  t.kind === "time" ? t.at.toISOString() : t.kind === "gtid" ? t.gtid.toString() : "latest";

/** Restores `request.until`; see the module comment. */
export async function restoreToPoint(
  config: RestoreConfig,
  backups: ListedBackup[],
  request: PitrRequest,
  deps: RestoreDeps,
): Promise<PitrResult> {
  const log = deps.log.with({ until: describeTarget(request.until), target: request.target });
  const snapshot = await chooseStartingSnapshot(
    deps.s3,
    config,
    backups,
    request.until,
    request.backupId,
    log,
  );
  const plan = await planFor(config, snapshot, request, deps);
  const work = await mkdtemp(join(config.scratchDir, "pitr-"));
  try {
    const segments = await downloadSegments(
      deps.s3,
      config.restore.bucket,
      plan.steps.map((s) => s.entry),
      join(work, "segments"),
      log,
      deps.signal,
    );
    const stop = stopOf(request.until, plan);
    // The selection made from the snapshot's recorded state proves the chain (and refuses a bad target)
    // before anything is restored; it is made again from the state the restored server recovers to.
    selectTransactions(snapshot.flavor, segments, snapshot.start, stop);
    deps.signal?.throwIfAborted();
    const restored = await (request.prepared ??
      restoreBackup(config, snapshot.backup, request.target, request.force, deps));
    deps.signal?.throwIfAborted();
    const replayed = await replay(config, snapshot, segments, stop, request, work, deps);
    const reached = parseState(snapshot.flavor, replayed.reached);
    return {
      ...restored,
      replicationStatements: restored.replicationStatements.map((s) =>
        /^SET GLOBAL gtid_slave_pos/.test(s) ? `SET GLOBAL gtid_slave_pos = '${reached.toString()}'` : s,
      ),
      pitr: {
        until: describeTarget(request.until),
        reachedGtid: reached.toString(),
        lastGtid: replayed.selection.lastGtid,
        lastCommitAt:
          replayed.selection.lastCommitMs === null
            ? null
            : new Date(replayed.selection.lastCommitMs).toISOString(),
        startGtid: replayed.start.toString(),
        segments: segments.length,
        transactions: replayed.selection.transactions,
        replaySeconds: Math.round(replayed.seconds * 1000) / 1000,
        replayRate: replayed.seconds > 0 ? Math.round(replayed.selection.transactions / replayed.seconds) : 0,
        lost: plan.gap?.missing ?? null,
      },
    };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** The chain from the snapshot to the point; a gap or an archive that ends before the point refuses. */
async function planFor(
  config: RestoreConfig,
  snapshot: StartingSnapshot,
  request: PitrRequest,
  deps: RestoreDeps,
): Promise<ChainPlan> {
  const { bucket, cluster } = config.restore;
  const listed = await listArchive(deps.s3, bucket, prefixOf(config), cluster);
  const until = request.until;
  const epochs = await readArchive(deps.s3, bucket, listed, segmentsUpTo(listed, until));
  const plan = planChain(snapshot.flavor, epochs, snapshot.start, until);
  deps.log.info("chain planned", {
    snapshot: snapshot.backup.backupId,
    start: snapshot.start.toString(),
    segments: plan.steps.length,
    reach: plan.reach,
    reachAt: plan.reachAt,
  });
  if (plan.gap !== null && !request.force) {
    const gap = plan.gap;
    throw new PipelineError(
      "PitrRefused",
      `cannot restore ${cluster} to ${describeTarget(until)} from snapshot ${snapshot.backup.backupId}: the binlog archive has a gap. ` +
        `It reaches ${gap.reachedGtid}${gap.reachedAt ? ` (committed ${gap.reachedAt})` : ""}; missing: ${gap.missing}; ` +
        `archived transactions resume with ${gap.resumesWith.host}/${gap.resumesWith.epoch} #${gap.resumesWith.sequence}` +
        `${gap.resumesWith.firstCommitAt ? ` (committed from ${gap.resumesWith.firstCommitAt})` : ""}. ` +
        `Everything committed after ${gap.reachedAt ?? gap.reachedGtid} would be lost`,
      `add --force to restore up to ${gap.reachedAt ?? gap.reachedGtid} and lose the rest, or restore from a snapshot taken after the gap (see \`restore list\`)`,
    );
  }
  if (plan.archiveEndsAt !== null && until.kind === "time")
    throw new PipelineError(
      "PitrRefused",
      `cannot restore ${cluster} to ${until.at.toISOString()}: the archive's newest transaction committed at ${plan.archiveEndsAt}`,
      "if the cluster wrote nothing after it, or to take what is archived, restore with --until latest",
    );
  if (plan.steps.length === 0 && until.kind === "gtid" && !snapshot.start.covers(until.gtid))
    throw new PipelineError(
      "PitrRefused",
      `the archive holds no segment from ${snapshot.start.toString()} towards ${until.gtid.toString()}`,
      "check the GTID, or `restore list`",
    );
  return plan;
}

/**
 * The segments worth reading for a point: for a time, those begun at or before it and each epoch's first one
 * after it (without it, a missing segment just before the point would look like the archive's end).
 */
function segmentsUpTo(listed: ListedEpoch[], until: PitrTarget): (s: ListedSegment) => boolean {
  if (until.kind !== "time") return () => true;
  const at = until.at.getTime();
  const next = new Set(listed.map((e) => e.segments.find((s) => s.firstAt.getTime() > at)));
  return (s) => s.firstAt.getTime() <= at || next.has(s);
}

/** Where the replay stops: the point, or with --force past a gap the end of what the chain reaches. */
function stopOf(until: PitrTarget, plan: ChainPlan): ReplayStop {
  if (plan.gap !== null || until.kind === "latest") return { kind: "end" };
  return until.kind === "time"
    ? { kind: "time", atMs: until.at.getTime() }
    : { kind: "gtid", gtid: until.gtid };
}

/**
 * Starts the restored datadir with the relay logs of the selection (made from the state the server recovers
 * to), applies them, checks where it ended, and shuts the server down. A lock-free snapshot whose exact
 * position no verdict names is started once first, to read the state it recovers to.
 */
async function replay(
  config: RestoreConfig,
  snapshot: StartingSnapshot,
  segments: VerifiedSegment[],
  stop: ReplayStop,
  request: PitrRequest,
  work: string,
  deps: RestoreDeps,
): Promise<{ selection: ReplaySelection; seconds: number; reached: string; start: GtidState }> {
  const { target, inspect } = request;
  const relayDir = join(work, "relay");
  await mkdir(relayDir, { mode: 0o750 });
  const start = snapshot.startExact
    ? snapshot.start
    : await withServer(config, snapshot, target, work, segments, null, deps, (conn) =>
        recoveredState(conn, snapshot.flavor),
      );
  const selection = selectTransactions(snapshot.flavor, segments, start, stop);
  const relay = await writeRelayLogs(relayDir, selection.pieces);
  return withServer(config, snapshot, target, work, segments, relay, deps, async (conn, plan) => {
    const recovered = await recoveredState(conn, snapshot.flavor);
    checkRecovered(snapshot, start, recovered);
    if (selection.transactions === 0) {
      await inspect?.(conn);
      return { selection, seconds: 0, reached: recovered.toString(), start };
    }
    deps.log.info("replaying", {
      transactions: selection.transactions,
      relayBytes: relay.bytes,
      files: relay.files.length,
    });
    const applied = await applyRelayLogs(conn, relay, {
      flavor: snapshot.flavor,
      target: selection.reached,
      log: deps.log,
      signal: deps.signal,
    }).catch(async (error: unknown) => {
      if (error instanceof PipelineError || deps.signal?.aborted) throw error;
      throw new ReplayFailed(
        `${messageOf(error)}; the server's error log ends with:\n${await tailFile(plan.errorLog)}`,
      );
    });
    const reached = await recoveredState(conn, snapshot.flavor);
    if (!sameState(reached, selection.reached))
      throw new PipelineError(
        "PitrRefused",
        `the replay ended at ${reached.toString()}, not at ${selection.reached.toString()}`,
        "the target directory is not at the point: do not use it; report this with the log",
      );
    deps.signal?.throwIfAborted();
    await inspect?.(conn);
    return { selection, seconds: applied.seconds, reached: reached.toString(), start };
  });
}

/** A session on the restored server. */
export type Session = Awaited<ReturnType<Awaited<ReturnType<typeof startScratchServer>>["connect"]>>;

/** Runs `use` on a session of the restored datadir's server (with the relay logs, when given), then stops it. */
async function withServer<T>(
  config: RestoreConfig,
  snapshot: StartingSnapshot,
  target: string,
  work: string,
  segments: VerifiedSegment[],
  relay: RelayLogs | null,
  deps: RestoreDeps,
  use: (conn: Session, plan: ScratchServerPlan) => Promise<T>,
): Promise<T> {
  const plan = await serverPlan(config, snapshot, target, work, segments, relay);
  await mkdir(plan.tmpdir, { recursive: true, mode: 0o750 });
  await deps.$`chown -R ${plan.user}: ${work}`;
  const timeout = (config.mysqld?.startTimeoutSeconds ?? VERIFY_DEFAULTS.mysqld.startTimeoutSeconds) * 1000;
  const server = await startScratchServer(plan, timeout, deps.signal).catch((error: unknown) => {
    if (!(error instanceof StartupFailure) || deps.signal?.aborted) throw error;
    throw new PipelineError(
      "VerificationFailed",
      `the restored snapshot ${snapshot.backup.backupId} does not start, so nothing was replayed: ${error.message}`,
      "restore from another snapshot (and look at this one's verification.json)",
      { cause: error },
    );
  });
  try {
    const conn = await server.connect();
    try {
      return await use(conn, plan);
    } finally {
      await conn.end().catch(() => undefined);
    }
  } finally {
    await server.stop();
  }
}

/**
 * The restored server must hold exactly the state the replay starts from, and for a lock-free backup lie
 * between the positions read before and after its snapshot.
 */
function checkRecovered(snapshot: StartingSnapshot, start: GtidState, recovered: GtidState): void {
  const outside =
    snapshot.bounds === null
      ? []
      : snapshot.flavor === "mariadb"
        ? mariadbBetween(snapshot.bounds.before, recovered.toString(), snapshot.bounds.after)
        : mysqlBetween(snapshot.bounds.before, recovered.toString(), snapshot.bounds.after);
  if (sameState(recovered, start) && outside.length === 0) return;
  throw new PipelineError(
    "VerificationFailed",
    `the restored snapshot ${snapshot.backup.backupId} recovered to ${recovered.toString()}, but the replay must start at ${start.toString()}` +
      `${outside.length ? ` (and it is outside the bounds read around the snapshot: ${outside.join("; ")})` : ""}; nothing was replayed`,
    "the snapshot does not hold what its manifest and verdict say: restore from another one (and look at its verification.json)",
  );
}

/** The GTID state the server holds (MariaDB: its binlog position; MySQL: gtid_executed). */
async function recoveredState(conn: Session, flavor: StartingSnapshot["flavor"]): Promise<GtidState> {
  const [rows] = await conn.query(
    flavor === "mariadb" ? "SELECT @@gtid_binlog_pos AS pos" : "SELECT @@gtid_executed AS pos",
  );
  const row = (rows as Array<{ pos: string | null }>)[0];
  return parseState(flavor, row?.pos ?? "");
}

/**
 * The server for the replay: the restored datadir at `target`, run files in `work`, a server id no
 * transaction of the chain carries (an applier skips events with its own id), and the replay's options.
 */
async function serverPlan(
  config: RestoreConfig,
  snapshot: StartingSnapshot,
  target: string,
  work: string,
  segments: VerifiedSegment[],
  relay: RelayLogs | null,
): Promise<ScratchServerPlan> {
  const { manifest } = snapshot;
  const binary = await findServerBinary(config.mysqld?.binary);
  const base = planScratchServer(manifest, work, {
    binary,
    user: config.mysqld?.user ?? VERIFY_DEFAULTS.mysqld.user,
    bufferPoolMiB: config.mysqld?.bufferPoolMiB,
  });
  const map = (path: string) => mapSourcePath(manifest.snapshot.sourceRoot, target, path);
  const { settings } = manifest;
  const logBin = settings.logBinBasename === null ? null : map(settings.logBinBasename);
  const used = new Set<number>([manifest.server.serverId]);
  for (const s of segments)
    for (const t of s.transactions) if (t.gtid.flavor === "mariadb") used.add(t.gtid.server);
  let serverId = base.serverId;
  while (used.has(serverId)) serverId++;
  return {
    ...base,
    root: target,
    datadir: map(settings.datadir),
    logBin,
    logBinIndex:
      settings.logBinIndex !== null ? map(settings.logBinIndex) : logBin === null ? null : `${logBin}.index`,
    serverId,
    extraArgs: relay === null ? [] : replayServerOptions(snapshot.flavor, relay, 4),
  };
}

/** `lastPerDomain` of a state as text, for messages. */
export function describeState(state: GtidState): string {
  return lastPerDomain(state).map(formatGtid).join(",") || state.toString();
}

/** Turns an unexpected failure of the replay into one that says the target is not usable. */
export function replayFailure(error: unknown): PipelineError {
  if (error instanceof PipelineError) return error;
  return new PipelineError(
    "PitrRefused",
    `the point-in-time replay failed: ${messageOf(error)}`,
    "the target directory is not at the point: do not use it",
    { cause: error },
  );
}
