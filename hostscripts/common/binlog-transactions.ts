import type { ServerFlavor } from "../../contracts";
import { BinlogFormatError, type BinlogEvent } from "./binlog-events";
import { formatGtid, type Gtid } from "./gtid-state";

/**
 * Events grouped into whole transactions, the unit the archive cuts at and a replay selects by: a
 * transaction runs from its GTID event to the event that commits it. Between transactions sit the events
 * that belong to none (GTID_LIST, binlog checkpoints, ROTATE, STOP).
 *
 * What ends a transaction:
 * - an XID event (InnoDB and other two-phase engines), XA PREPARE, MySQL's compressed transaction payload;
 * - a `COMMIT`/`ROLLBACK` query (non-transactional engines), `XA COMMIT`/`XA ROLLBACK`;
 * - the statement of a standalone group: on MariaDB a GTID event flagged standalone (DDL) ends with its query;
 *   on MySQL a GTID event not followed by `BEGIN`/`XA START` is a single statement (DDL).
 */

/** One whole transaction as it lies in the buffer it was read from. */
export interface BinlogTransaction {
  gtid: Gtid;
  /** Offset of its GTID event, and the end of the event that commits it. */
  start: number;
  end: number;
  /**
   * Its commit time in ms since the epoch: MySQL 8's original commit timestamp (µs, truncated to ms), else the
   * GTID event's timestamp (whole seconds; MariaDB stamps it at commit).
   */
  commitMs: number;
  /** Events in it, the GTID event included. */
  events: number;
}

interface Open {
  gtid: Gtid;
  start: number;
  commitMs: number;
  standalone: boolean;
  begun: boolean;
  events: number;
}

/** Feeds events in order and reports each transaction as it completes. */
export class TransactionTracker {
  private open: Open | null = null;

  constructor(
    private readonly flavor: ServerFlavor,
    /** Names the binlog in errors. */
    private readonly what: string,
  ) {}

  /** Whether an event fed last left a transaction open. */
  get inTransaction(): boolean {
    return this.open !== null;
  }

  /** The GTID of the open transaction, if any (for error messages). */
  get openGtid(): string | null {
    return this.open === null ? null : formatGtid(this.open.gtid);
  }

  /** Forgets an open transaction (the reader starts over at a transaction boundary). */
  reset(): void {
    this.open = null;
  }

  /**
   * Feeds one event; returns the transaction it completes, if it completes one. A GTID event while another
   * transaction is open means the binlog lost that transaction's end: it throws.
   */
  accept(event: BinlogEvent): BinlogTransaction | null {
    const { detail } = event;
    if (detail.kind === "gtid") {
      if (this.open !== null) {
        throw new BinlogFormatError(
          `${this.what}: a GTID event (${formatGtid(detail.gtid)}) at offset ${event.offset} inside transaction ` +
            `${formatGtid(this.open.gtid)}, which never committed`,
          event.offset,
        );
      }
      this.open = {
        gtid: detail.gtid,
        start: event.offset,
        commitMs:
          detail.commitMicros !== null
            ? Math.floor(detail.commitMicros / 1000)
            : event.header.timestamp * 1000,
        standalone: detail.standalone,
        begun: this.flavor === "mariadb" && !detail.standalone,
        events: 1,
      };
      return null;
    }
    const open = this.open;
    if (open === null) return null;
    open.events++;
    if (detail.kind === "commit" || (detail.kind === "query" && this.endsWith(open, detail.head)))
      return this.close(open, event);
    return null;
  }

  private endsWith(open: Open, head: string): boolean {
    const sql = head.trimStart().toUpperCase();
    if (/^(BEGIN|XA\s+START)\b/.test(sql)) {
      open.begun = true;
      return false;
    }
    if (/^(COMMIT|ROLLBACK|XA\s+COMMIT|XA\s+ROLLBACK)\b/.test(sql)) return true;
    if (/^XA\s+END\b/.test(sql)) return false;
    return this.flavor === "mariadb" ? open.standalone : !open.begun;
  }

  private close(open: Open, event: BinlogEvent): BinlogTransaction {
    this.open = null;
    return {
      gtid: open.gtid,
      start: open.start,
      end: event.offset + event.header.length,
      commitMs: open.commitMs,
      events: open.events,
    };
  }
}
