import { EVENT_HEADER_BYTES, readEvents, type BinlogEvent } from "../common/binlog-events";
import { TransactionTracker, type BinlogTransaction } from "../common/binlog-transactions";
import type { BinlogFileHeader } from "./binlog-file";
import { readInto, unreadable } from "./binlog-file";

/**
 * Reading one binlog file forward from a byte offset: new bytes are read in chunks into one reused buffer,
 * parsed into whole events (each CRC32 checked, each `end_log_pos` matched against its place), and handed out
 * in runs that end, where the bytes allow, at a transaction boundary, the only place a segment may be cut.
 * Bytes of an event not yet whole stay behind until the next read.
 */

/** A run of whole events. */
export interface EventRun {
  /** Where the run starts in the file. */
  start: number;
  /** A view of the cursor's read buffer: valid until the cursor reads again (the consumer writes it out first). */
  bytes: Buffer;
  events: BinlogEvent[];
  /** Transactions the run completes. */
  done: BinlogTransaction[];
  /** True when no transaction is open after the run: a segment may end here. */
  boundary: boolean;
}

/**
 * Bytes read at once. Every event of a read is parsed before the first is handed out, so this bounds the
 * parsed events alive together: 256 KiB of binlog is a few thousand, which die young in the archiver's 1 MiB
 * semi-spaces; 4 MiB reads (and a fresh buffer each) kept ~40,000 alive and grew the old generation.
 */
export const READ_BYTES = 256 * 1024;
/** Runs are handed out at the first boundary past this size, so a segment's size limit is kept closely. */
const RUN_BYTES = 1024 * 1024;

export class FileCursor {
  /** The read buffer: its first `held` bytes are an event not yet whole, read again after them. */
  private buffer = Buffer.allocUnsafe(READ_BYTES);
  private held = 0;
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
    return this.readOffset - this.held;
  }

  /** Bytes read but not handed out (an event not yet whole). */
  get pendingBytes(): number {
    return this.held;
  }

  /** Reads the file up to `limit` and yields runs of whole events. */
  async *readTo(limit: number): AsyncGenerator<EventRun> {
    while (this.readOffset < limit) {
      // Fill the buffer; an event larger than it is read whole at once (its header says how long it is).
      const rest = this.held >= EVENT_HEADER_BYTES ? this.buffer.readUInt32LE(9) - this.held : 0;
      const want = Math.min(limit - this.readOffset, Math.max(READ_BYTES - this.held, rest));
      this.makeRoom(this.held + want);
      const read = await readInto(this.file.path, this.buffer, this.held, want, this.readOffset).catch(
        (error: unknown) => {
          throw unreadable(this.file.path, error);
        },
      );
      if (read === 0) return;
      const origin = this.position;
      const filled = this.held + read;
      const bytes = this.buffer.subarray(0, filled);
      this.readOffset += read;
      const { events, end } = readEvents(bytes, 0, this.file.fde, {
        what: `binlog ${this.file.path}`,
        origin,
      });
      this.held = filled - end;
      try {
        yield* this.runs(bytes, events, origin);
      } finally {
        // Only once the runs (views of the buffer) are consumed: the event not yet whole moves to the front.
        this.buffer.copyWithin(0, end, filled);
      }
    }
  }

  /** A buffer of at least `bytes` with the held bytes at its start; back to READ_BYTES after a big event. */
  private makeRoom(bytes: number): void {
    const size = Math.max(READ_BYTES, bytes);
    if (size <= this.buffer.length && (size > READ_BYTES || this.buffer.length === READ_BYTES)) return;
    const buffer = Buffer.allocUnsafe(size);
    this.buffer.copy(buffer, 0, 0, this.held);
    this.buffer = buffer;
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
