import { createHash, type Hash } from "node:crypto";
import { mkdir, open, rename, type FileHandle } from "node:fs/promises";
import {
  BINLOG_FORMAT_VERSION,
  ledgerKey,
  segmentKey,
  type BinlogServer,
  type BinlogSegmentRef,
} from "../../contracts";
import type { BinlogEvent } from "../common/binlog-events";
import type { BinlogTransaction } from "../common/binlog-transactions";
import { formatGtid, setDifference, type Gtid, type GtidState } from "../common/gtid-state";
import type { BinlogFileHeader } from "./binlog-file";
import { syncDirectory, writeDurably } from "../common/durable";
import { spoolFiles, type LedgerDraft } from "./state";

/**
 * The segment being filled: whole events of one binlog file, appended to a spool file as they are read
 * (so memory stays small whatever the segment's size), with the figures its ledger entry needs. `cut` makes
 * it a spooled segment and its ledger draft; the state that names it is saved by the caller.
 */

/** Who and where a segment belongs. */
export interface SegmentOwner {
  stateDir: string;
  prefix: string;
  cluster: string;
  host: string;
  epoch: string;
  server: BinlogServer;
}

/** A spooled segment: its files and its ledger entry without `archivedAt`. */
export interface CutSegment {
  draft: LedgerDraft;
  binlogPath: string;
  ledgerPath: string;
  /** Where the next segment starts: `draft.file.endOffset`. */
  endOffset: number;
  after: GtidState;
}

export class PendingSegment {
  private bytes: number;
  private endOffset: number;
  private events = 0;
  private firstEventMs: number | null = null;
  private lastEventMs: number | null = null;
  private transactions = 0;
  private firstCommitMs: number | null = null;
  private lastCommitMs: number | null = null;
  /** The last event is a ROTATE or STOP: nothing follows it in the file. */
  private endsWithFileEnd = false;
  private readonly first = new Map<string, Gtid>();
  private readonly last = new Map<string, Gtid>();
  /** Wall-clock time the segment's first transaction was read: the RPO clock of the segment. */
  firstTransactionReadMs: number | null = null;
  /**
   * The figures at the last transaction boundary: where the segment can be cut, or rolled back to. The hash
   * is a copy of the running one there, so a rollback never reads the spool file back (up to a whole segment).
   */
  private marked: {
    bytes: number;
    endOffset: number;
    events: number;
    lastEventMs: number | null;
    hash: Hash;
  };

  private constructor(
    private readonly owner: SegmentOwner,
    readonly sequence: number,
    readonly file: BinlogFileHeader,
    readonly startOffset: number,
    private readonly before: GtidState,
    /** The running state: `before` plus every transaction appended. */
    readonly after: GtidState,
    private readonly handle: FileHandle,
    private hash: Hash,
    private readonly partialPath: string,
  ) {
    this.bytes = file.header.length;
    this.endOffset = startOffset;
    this.marked = {
      bytes: this.bytes,
      endOffset: startOffset,
      events: 0,
      lastEventMs: null,
      hash: hash.copy(),
    };
  }

  /** Opens the spool file of segment `sequence` and writes the file's header to it. */
  static async begin(
    owner: SegmentOwner,
    sequence: number,
    file: BinlogFileHeader,
    startOffset: number,
    before: GtidState,
  ): Promise<PendingSegment> {
    const paths = spoolFiles(owner.stateDir, owner.epoch, sequence);
    await mkdir(paths.dir, { recursive: true, mode: 0o700 });
    const handle = await open(paths.partial, "w+", 0o600);
    await handle.write(file.header);
    const hash = createHash("sha256").update(file.header);
    return new PendingSegment(
      owner,
      sequence,
      file,
      startOffset,
      before,
      before.clone(),
      handle,
      hash,
      paths.partial,
    );
  }

  /** Bytes of the segment so far, header included. */
  get size(): number {
    return this.bytes;
  }

  /** Where the bytes appended so far end in the binlog file. */
  get end(): number {
    return this.endOffset;
  }

  get transactionCount(): number {
    return this.transactions;
  }

  get hasEvents(): boolean {
    return this.events > 0;
  }

  /** Whether the bytes so far end at a transaction boundary (the segment may be cut now). */
  get atBoundary(): boolean {
    return this.marked.bytes === this.bytes;
  }

  /** Commit time of the segment's first transaction (ms), or null when it has none. */
  get firstCommit(): number | null {
    return this.firstCommitMs;
  }

  /** Records that the bytes so far end at a transaction boundary. */
  mark(): void {
    this.marked = {
      bytes: this.bytes,
      endOffset: this.endOffset,
      events: this.events,
      lastEventMs: this.lastEventMs,
      hash: this.hash.copy(),
    };
  }

  /**
   * Drops the bytes after the last boundary (a transaction that was never completed: a file that ends in the
   * middle of one because the server crashed while writing it); returns how many were dropped.
   */
  async rollbackToBoundary(): Promise<number> {
    const dropped = this.bytes - this.marked.bytes;
    if (dropped === 0) return 0;
    await this.handle.truncate(this.marked.bytes);
    this.hash = this.marked.hash.copy();
    ({
      bytes: this.bytes,
      endOffset: this.endOffset,
      events: this.events,
      lastEventMs: this.lastEventMs,
    } = this.marked);
    return dropped;
  }

  /**
   * Appends whole events: `bytes` are exactly the events (`events`, offsets relative to `bytes`), which start
   * at `this.end` in the file and complete `done` transactions (and leave none open).
   */
  async append(
    bytes: Buffer,
    events: BinlogEvent[],
    done: BinlogTransaction[],
    nowMs: number,
  ): Promise<void> {
    if (bytes.length === 0) return;
    await this.handle.write(bytes);
    this.hash.update(bytes);
    this.bytes += bytes.length;
    this.endOffset += bytes.length;
    for (const event of events) {
      this.endsWithFileEnd = event.detail.kind === "rotate" || event.detail.kind === "stop";
      const at = event.header.timestamp * 1000;
      this.firstEventMs ??= at;
      this.lastEventMs = at;
      this.events++;
    }
    for (const t of done) {
      const key = t.gtid.flavor === "mariadb" ? `d${t.gtid.domain}` : t.gtid.source;
      if (!this.first.has(key)) this.first.set(key, t.gtid);
      this.last.set(key, t.gtid);
      this.after.add(t.gtid);
      this.firstCommitMs ??= t.commitMs;
      this.lastCommitMs = t.commitMs;
      this.firstTransactionReadMs ??= nowMs;
      this.transactions++;
    }
  }

  /** Forgets the spool file (the segment is abandoned; its bytes will be read again). */
  async discard(): Promise<void> {
    await this.handle.close().catch(() => undefined);
  }

  /**
   * Closes the segment: the spool file is synced and renamed, its ledger draft written; returns both. It ends
   * its file when `endsFile` says so or its last event is the file's ROTATE or STOP.
   */
  async cut(previousLedgerKey: string | null, endsFileAnyway: boolean): Promise<CutSegment> {
    const endsFile = endsFileAnyway || this.endsWithFileEnd;
    await this.handle.sync();
    await this.handle.close();
    const paths = spoolFiles(this.owner.stateDir, this.owner.epoch, this.sequence);
    await rename(this.partialPath, paths.binlog);
    await syncDirectory(paths.dir);
    const ref: BinlogSegmentRef = {
      prefix: this.owner.prefix,
      cluster: this.owner.cluster,
      host: this.owner.host,
      epoch: this.owner.epoch,
      sequence: this.sequence,
      firstAt: new Date(this.firstCommitMs ?? this.firstEventMs ?? Date.now()),
    };
    const draft: LedgerDraft = {
      formatVersion: BINLOG_FORMAT_VERSION,
      cluster: this.owner.cluster,
      host: this.owner.host,
      epoch: this.owner.epoch,
      sequence: this.sequence,
      segmentKey: segmentKey(ref),
      ledgerKey: ledgerKey(ref),
      previousLedgerKey,
      server: this.owner.server,
      file: {
        name: this.file.name,
        identity: this.file.identity,
        headerBytes: this.file.header.length,
        startOffset: this.startOffset,
        endOffset: this.endOffset,
        endsFile,
      },
      gtid: {
        before: this.before.toString(),
        after: this.after.toString(),
        first: this.first.size === 0 ? null : [...this.first.values()].map(formatGtid).join(","),
        last: this.last.size === 0 ? null : [...this.last.values()].map(formatGtid).join(","),
        set: this.transactions === 0 ? null : setDifference(this.after, this.before),
      },
      events: { count: this.events, firstAt: iso(this.firstEventMs), lastAt: iso(this.lastEventMs) },
      transactions: {
        count: this.transactions,
        firstCommitAt: this.firstCommitMs === null ? null : iso(this.firstCommitMs),
        lastCommitAt: this.lastCommitMs === null ? null : iso(this.lastCommitMs),
      },
      bytes: this.bytes,
      sha256: this.hash.digest("hex"),
    };
    await writeDurably(paths.ledger, JSON.stringify(draft, null, 2) + "\n");
    return {
      draft,
      binlogPath: paths.binlog,
      ledgerPath: paths.ledger,
      endOffset: this.endOffset,
      after: this.after,
    };
  }
}

function iso(ms: number | null): string {
  return new Date(ms ?? Date.now()).toISOString();
}
