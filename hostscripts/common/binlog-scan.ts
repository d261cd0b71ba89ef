import {
  BinlogFormatError,
  parseFormatDescription,
  readEvents,
  type BinlogEvent,
  type FormatDescription,
} from "./binlog-events";
import { TransactionTracker, type BinlogTransaction } from "./binlog-transactions";
import { positionOfList, type GtidState } from "./gtid-state";

/**
 * A whole binlog file or archived segment read at once: every event (each CRC32 checked), the whole
 * transactions, and the GTID state the file announces at its start. Used where the bytes are complete (a
 * downloaded segment, a closed file, a test fixture); the archiver reads the open file incrementally instead.
 */

/** What a complete binlog (or segment) holds. */
export interface ScannedBinlog {
  fde: FormatDescription;
  /** Bytes of the magic number and the FDE: where the events after it begin. */
  headerBytes: number;
  /** The events after the FDE, with their offsets in the buffer. */
  events: BinlogEvent[];
  transactions: BinlogTransaction[];
  /**
   * The state a GTID_LIST (MariaDB: the position it stands for) or PREVIOUS_GTIDS (MySQL) event before the
   * first transaction announces, or null when the bytes hold none (a segment cut from the middle of a file).
   */
  announced: GtidState | null;
}

/**
 * Reads `buf` as a complete binlog: it must end exactly at an event's end and outside any transaction.
 * `origin` is where the events after the header first stood in their file minus `headerBytes` (so each
 * event's `end_log_pos` is checked against its real end): 0 for a whole file, `startOffset − headerBytes` for
 * a segment; null skips that check.
 */
export function scanBinlog(buf: Buffer, what: string, origin: number | null = 0): ScannedBinlog {
  const fde = parseFormatDescription(buf, what);
  const headerBytes = 4 + fde.length;
  const { events, end } = readEvents(buf, headerBytes, fde, { what, origin });
  if (end !== buf.length)
    throw new BinlogFormatError(`${what} ends inside an event that starts at offset ${end}`, end);
  const tracker = new TransactionTracker(fde.flavor, what);
  const transactions: BinlogTransaction[] = [];
  let announced: GtidState | null = null;
  for (const event of events) {
    const { detail } = event;
    if (transactions.length === 0 && !tracker.inTransaction) {
      if (detail.kind === "gtid-list") announced = positionOfList(detail.gtids);
      if (detail.kind === "previous-gtids") announced = detail.set;
    }
    const done = tracker.accept(event);
    if (done !== null) transactions.push(done);
  }
  if (tracker.inTransaction)
    throw new BinlogFormatError(
      `${what} ends inside transaction ${tracker.openGtid}, before its commit`,
      end,
    );
  return { fde, headerBytes, events, transactions, announced };
}
