import { readEvents, type BinlogEvent } from "../common/binlog-events";
import { TransactionTracker, type BinlogTransaction } from "../common/binlog-transactions";
import type { BinlogFileHeader } from "./binlog-file";
import { readRange, unreadable } from "./binlog-file";

/**
 * Reading one binlog file forward from a byte offset: new bytes are read in chunks, parsed into whole events
 * (each CRC32 checked, each `end_log_pos` matched against its place), and handed out in runs that end, where
 * the bytes allow, at a transaction boundary, the only place a segment may be cut. Bytes of an event not yet
 * whole stay behind until the next read.
 */

/** A run of whole events. */
export interface EventRun {
  /** Where the run starts in the file. */
  start: number;
  bytes: Buffer;
  events: BinlogEvent[];
  /** Transactions the run completes. */
  done: BinlogTransaction[];
  /** True when no transaction is open after the run: a segment may end here. */
  boundary: boolean;
}

const CHUNK_BYTES = 4 * 1024 * 1024;
/** Runs are handed out at the first boundary past this size, so a segment's size limit is kept closely. */
const RUN_BYTES = 1024 * 1024;

export class FileCursor {
  private leftover: Buffer = Buffer.alloc(0);
  readonly tracker: TransactionTracker;

  constructor(
    readonly file: BinlogFileHeader,
    /** The next byte to read from the file. */
    private readOffset: number,
  ) {
    this.tracker = new TransactionTracker(file.fde.flavor, `binlog ${file.path}`);
  }

  /** Where the bytes not yet handed out begin (the end of the last run). */
  get position(): number {
    return this.readOffset - this.leftover.length;
  }

  /** Bytes read but not handed out (an event not yet whole). */
  get pendingBytes(): number {
    return this.leftover.length;
  }

  /** Reads the file up to `limit` and yields runs of whole events. */
  async *readTo(limit: number): AsyncGenerator<EventRun> {
    while (this.readOffset < limit) {
      const to = Math.min(limit, this.readOffset + CHUNK_BYTES);
      const chunk = await readRange(this.file.path, this.readOffset, to).catch((error: unknown) => {
        throw unreadable(this.file.path, error);
      });
      if (chunk.length === 0) return;
      const origin = this.position;
      const buffer = this.leftover.length === 0 ? chunk : Buffer.concat([this.leftover, chunk]);
      this.readOffset += chunk.length;
      const { events, end } = readEvents(buffer, 0, this.file.fde, {
        what: `binlog ${this.file.path}`,
        origin,
      });
      this.leftover = Buffer.from(buffer.subarray(end));
      yield* this.runs(buffer, events, origin);
    }
  }

  /**
   * Splits parsed events into runs: one at each boundary past RUN_BYTES, then the rest up to the last
   * boundary, then (if a transaction is still open) its events so far as a run that is not a boundary, so a
   * segment can always be rolled back to a boundary.
   */
  private *runs(buffer: Buffer, events: BinlogEvent[], origin: number): Generator<EventRun> {
    let from = 0;
    let runEvents: BinlogEvent[] = [];
    let done: BinlogTransaction[] = [];
    let boundaryAt = 0;
    for (const event of events) {
      const finished = this.tracker.accept(event);
      runEvents.push(event);
      if (finished !== null) done.push(finished);
      if (this.tracker.inTransaction) continue;
      const end = event.offset + event.header.length;
      boundaryAt = runEvents.length;
      if (end - from >= RUN_BYTES) {
        yield {
          start: origin + from,
          bytes: buffer.subarray(from, end),
          events: runEvents,
          done,
          boundary: true,
        };
        from = end;
        runEvents = [];
        done = [];
        boundaryAt = 0;
      }
    }
    const endOf = (list: BinlogEvent[]) => list.at(-1)!.offset + list.at(-1)!.header.length;
    if (boundaryAt > 0) {
      const whole = runEvents.slice(0, boundaryAt);
      const end = endOf(whole);
      yield { start: origin + from, bytes: buffer.subarray(from, end), events: whole, done, boundary: true };
      from = end;
      runEvents = runEvents.slice(boundaryAt);
      done = [];
    }
    if (runEvents.length === 0) return;
    const end = endOf(runEvents);
    yield {
      start: origin + from,
      bytes: buffer.subarray(from, end),
      events: runEvents,
      done,
      boundary: false,
    };
  }
}
