import { mkdir } from "node:fs/promises";
import { newEpochId, parseEpochRecord, type BinlogEpochRecord, type BinlogServer } from "../../contracts";
import { noCheckpoint, type Checkpoint } from "../common/checkpoint";
import { writeDurably } from "../common/durable";
import { parseState } from "../common/gtid-state";
import type { Logger } from "../common/log";
import type { Continuation } from "./continuity";
import type { EventRun, FileCursor } from "./cursor";
import { PendingSegment } from "./segment";
import { STATE_FORMAT_VERSION, saveState, spoolFiles, type ArchiverState, type SpoolItem } from "./state";

/**
 * The chain the archiver writes: its saved state, the open segment and the spool queue. Every change that
 * must survive a crash goes through here in one order: spool files first, then the state that names them
 * (the commit point), then the queue the uploader drains.
 */

/** What the chain needs to know about where it runs. */
export interface ChainSettings {
  stateDir: string;
  prefix: string;
  cluster: string;
  host: string;
  /** Cut the open segment once its first transaction was read this long ago. */
  cutAfterMs: number;
  /** Cut at the first boundary past this size. */
  maxBytes: number;
  log: Logger;
  now(): Date;
  checkpoint?: Checkpoint;
}

/** A new epoch as `startEpoch` reports it. */
export interface StartedEpoch {
  epoch: string;
  reason: BinlogEpochRecord["reason"];
  missing: string | null;
}

export class ArchiveChain {
  private pending: PendingSegment | null = null;
  /** Spooled items in upload order. */
  readonly queue: SpoolItem[];

  constructor(
    private readonly settings: ChainSettings,
    /** The saved state, or null before the first epoch. */
    public state: ArchiverState | null,
    spooled: SpoolItem[],
  ) {
    this.queue = spooled;
  }

  private get checkpoint(): Checkpoint {
    return this.settings.checkpoint ?? noCheckpoint;
  }

  /** Whether the open segment holds a transaction not yet cut. */
  get hasOpenTransactions(): boolean {
    return (this.pending?.transactionCount ?? 0) > 0;
  }

  /** Whether an open segment exists (with any event). */
  get isOpen(): boolean {
    return this.pending !== null;
  }

  /** Begins a new epoch at `decision`: its record spooled, the state saved; returns what to report. */
  async startEpoch(
    decision: Extract<Continuation, { kind: "new-epoch" }>,
    identity: string,
    server: BinlogServer,
  ): Promise<StartedEpoch> {
    const now = this.settings.now();
    const epoch = newEpochId(now);
    const previous = this.state;
    const { cluster, host, stateDir } = this.settings;
    const record: BinlogEpochRecord = parseEpochRecord({
      formatVersion: 1,
      cluster,
      host,
      epoch,
      startedAt: now.toISOString(),
      reason: decision.reason,
      detail: decision.detail,
      server,
      previous:
        previous === null
          ? null
          : {
              epoch: previous.epoch,
              sequence: previous.sequence,
              gtidAfter: previous.gtid,
              lastCommitAt: previous.lastCommitAt,
            },
      gtidStart: decision.before.toString(),
      missing: decision.missing,
    });
    const files = spoolFiles(stateDir, epoch, 1);
    await mkdir(files.dir, { recursive: true, mode: 0o700 });
    await writeDurably(files.epoch, JSON.stringify(record, null, 2) + "\n");
    this.state = {
      formatVersion: STATE_FORMAT_VERSION,
      cluster,
      host,
      server,
      epoch,
      epochStartedAt: now.toISOString(),
      epochFirstCommitAt: null,
      sequence: 0,
      previousLedgerKey: null,
      gtid: decision.before.toString(),
      tail: { file: decision.file, identity, offset: decision.offset, endsFile: false },
      lastCommitAt: null,
    };
    await saveState(stateDir, this.state);
    this.queue.push({ kind: "epoch", epoch, path: files.epoch, record });
    return { epoch, reason: decision.reason, missing: decision.missing };
  }

  /** The chain goes on at `offset` of `file` (after a restart, or in the next file). */
  async moveTo(file: string, identity: string, offset: number): Promise<void> {
    this.state = { ...this.state!, tail: { file, identity, offset, endsFile: false } };
    await saveState(this.settings.stateDir, this.state);
  }

  /** Appends runs of whole events to the open segment, cutting at the size limit. */
  async consume(runs: AsyncGenerator<EventRun>, cursor: FileCursor, server: BinlogServer): Promise<void> {
    for await (const run of runs) {
      if (this.pending === null) {
        const state = this.state!;
        if (run.start !== state.tail.offset)
          throw new Error(
            `internal: a segment would start at ${run.start}, but the chain ends at ${state.tail.offset}`,
          );
        const owner = { ...this.settings, epoch: state.epoch, server };
        const before = parseState(server.flavor, state.gtid);
        this.pending = await PendingSegment.begin(owner, state.sequence + 1, cursor.file, run.start, before);
      }
      await this.pending.append(run.bytes, run.events, run.done, this.settings.now().getTime());
      if (!run.boundary) continue;
      this.pending.mark();
      if (this.pending.size >= this.settings.maxBytes && this.pending.transactionCount > 0)
        await this.cut(false, server);
    }
  }

  /** Cuts the open segment when its first transaction has waited long enough (or `force`) and it may be cut. */
  async cutIfDue(server: BinlogServer, force: boolean): Promise<void> {
    const p = this.pending;
    if (p === null || p.transactionCount === 0 || !p.atBoundary || p.firstTransactionReadMs === null) return;
    if (force || this.settings.now().getTime() - p.firstTransactionReadMs >= this.settings.cutAfterMs)
      await this.cut(false, server);
  }

  /**
   * Ends the open segment where its file ended (or vanished): bytes after the last boundary (a transaction
   * the server never completed) are dropped; returns how many. `whole` says the file was read to its end.
   */
  async endOfFile(whole: boolean, server: BinlogServer): Promise<number> {
    if (this.pending === null) return 0;
    const dropped = await this.pending.rollbackToBoundary();
    if (this.pending.hasEvents) await this.cut(whole, server);
    else await this.drop();
    return dropped;
  }

  /** On stop: what the open segment holds up to its last boundary is cut. */
  async close(server: BinlogServer): Promise<void> {
    if (this.pending === null) return;
    await this.pending.rollbackToBoundary();
    if (this.pending.transactionCount > 0) await this.cut(false, server);
    else await this.drop();
  }

  private async drop(): Promise<void> {
    await this.pending?.discard();
    this.pending = null;
  }

  /** Cuts the open segment: spooled, named by the saved state (the commit point), queued for upload. */
  private async cut(endsFile: boolean, server: BinlogServer): Promise<void> {
    const pending = this.pending!;
    const state = this.state!;
    const segment = await pending.cut(state.previousLedgerKey, endsFile);
    await this.checkpoint("binlog-spooled");
    const { draft } = segment;
    this.state = {
      ...state,
      server,
      sequence: pending.sequence,
      previousLedgerKey: draft.ledgerKey,
      gtid: draft.gtid.after,
      tail: {
        file: draft.file.name,
        identity: draft.file.identity,
        offset: segment.endOffset,
        endsFile: draft.file.endsFile,
      },
      lastCommitAt: draft.transactions.lastCommitAt ?? state.lastCommitAt,
      epochFirstCommitAt: state.epochFirstCommitAt ?? draft.transactions.firstCommitAt,
    };
    await saveState(this.settings.stateDir, this.state);
    this.pending = null;
    this.queue.push({
      kind: "segment",
      epoch: state.epoch,
      sequence: pending.sequence,
      binlogPath: segment.binlogPath,
      ledgerPath: segment.ledgerPath,
      draft,
    });
    await this.checkpoint("binlog-committed");
  }

  /** Commit time of the oldest transaction read but not yet in S3 (ms), or null. */
  oldestUnarchivedCommit(): number | null {
    const times = this.queue
      .map((item) =>
        item.kind === "segment" ? Date.parse(item.draft.transactions.firstCommitAt ?? "") : NaN,
      )
      .filter((t) => !Number.isNaN(t));
    const open = this.pending?.firstCommit ?? null;
    if (open !== null) times.push(open);
    return times.length === 0 ? null : Math.min(...times);
  }
}
