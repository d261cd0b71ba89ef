import type { BinlogSegmentEntry, ServerFlavor } from "../../contracts";
import type { BinlogTransaction } from "../common/binlog-transactions";
import { formatGtid, parseState, type GtidState } from "../common/gtid-state";

/**
 * The two computations of the PITR drill (drill.ts) that need no server: which second it restores to, and the
 * GTID state a restore to that second must reach — computed here from the archive itself, apart from the
 * restore's own chain planning and selection (common/pitr-chain.ts, restore/select.ts), so that a restore that
 * stops early or late is caught rather than agreed with.
 *
 * The rule both implement is `restore --until T`'s: every transaction in binlog order up to the first one
 * committed after T (binlog timestamps are whole seconds, so one stamped T is in). Binlog order is commit
 * order; a commit time can step back behind an earlier one by up to the segment checks' time skew (a long
 * statement stamped with its start), which is why a segment is taken whole from its ledger entry only when
 * even its last commit plus that skew is at or before T, and read event by event otherwise.
 */

/** Seconds strictly between `from` and `to` (ISO times), as whole seconds since the epoch; null if none. */
export function drillSeconds(from: string, to: string): { first: number; last: number } | null {
  const first = Math.floor(Date.parse(from) / 1000) + 1;
  const last = Math.ceil(Date.parse(to) / 1000) - 1;
  return Number.isFinite(first) && Number.isFinite(last) && last >= first ? { first, last } : null;
}

/**
 * The drill's point: a whole second strictly inside the window, drawn by `seed` (recorded in the verdict, so
 * the same window and seed give the same T). Null when the window holds no whole second.
 */
export function drillPoint(seed: number, window: { from: string; to: string }): Date | null {
  const seconds = drillSeconds(window.from, window.to);
  if (seconds === null) return null;
  const span = seconds.last - seconds.first + 1;
  return new Date((seconds.first + (Math.abs(Math.trunc(seed)) % span)) * 1000);
}

/** The GTID state a restore to T must reach, and how it was found. */
export interface ExpectedState {
  state: GtidState;
  /** The last transaction at or before T past the start, or null when none is. */
  lastGtid: string | null;
  /** Segments taken whole from their ledger entry, and segments whose events were read. */
  segmentsFromLedger: number;
  segmentsRead: number;
  /**
   * Null when the archive reaches T; else why not (before any transaction after T, no segment continues the
   * state while archived transactions lie beyond it: a gap, whose transactions may be at or before T).
   */
  short: string | null;
}

/** Reads a segment's transactions (with its sha256 and every CRC32 checked against its ledger entry). */
export type ReadTransactions = (entry: BinlogSegmentEntry) => Promise<BinlogTransaction[]>;

/**
 * Walks the archive from `start` (the snapshot's GTID state): each next segment is one whose `before` the
 * state covers and whose `after` adds to it, the same epoch's next sequence first, else the earliest
 * beginning; whole from the ledger when all of it is at or before T, else transaction by transaction up to
 * the first committed after T.
 */
export async function expectedStateAt(
  flavor: ServerFlavor,
  start: GtidState,
  entries: BinlogSegmentEntry[],
  atMs: number,
  skewMs: number,
  read: ReadTransactions,
): Promise<ExpectedState> {
  const state = start.clone();
  const found: ExpectedState = { state, lastGtid: null, segmentsFromLedger: 0, segmentsRead: 0, short: null };
  const pending = entries.filter((e) => e.transactions.count > 0 && e.server.flavor === flavor);
  let previous: BinlogSegmentEntry | null = null;
  for (;;) {
    const next = nextSegment(flavor, state, pending, previous);
    if (next === null) break;
    pending.splice(pending.indexOf(next), 1);
    previous = next;
    const lastMs = Date.parse(next.transactions.lastCommitAt ?? "");
    if (lastMs + skewMs <= atMs) {
      state.absorb(parseState(flavor, next.gtid.after));
      if (next.gtid.last !== null) found.lastGtid = next.gtid.last;
      found.segmentsFromLedger++;
      continue;
    }
    found.segmentsRead++;
    for (const t of await read(next)) {
      if (state.has(t.gtid)) continue;
      if (t.commitMs > atMs) return found;
      state.add(t.gtid);
      found.lastGtid = formatGtid(t.gtid);
    }
  }
  // No transaction after the point was met, and no segment continues the state: archived transactions
  // ahead of it (whenever they committed) mean the ones between are missing, and may be at or before the point.
  const beyond = pending.filter((e) => {
    const after = parseState(flavor, e.gtid.after);
    return after.covers(state) && !state.covers(after);
  });
  if (beyond.length > 0)
    found.short = `no archived segment continues ${state.toString()} towards the point, yet ${beyond.length} segment(s) lie beyond it (the first: ${beyond[0].segmentKey}, from ${beyond[0].gtid.before})`;
  return found;
}

function nextSegment(
  flavor: ServerFlavor,
  state: GtidState,
  pending: BinlogSegmentEntry[],
  previous: BinlogSegmentEntry | null,
): BinlogSegmentEntry | null {
  const continuing = pending.filter((e) => {
    const after = parseState(flavor, e.gtid.after);
    return state.covers(parseState(flavor, e.gtid.before)) && after.covers(state) && !state.covers(after);
  });
  const same = continuing.find(
    (e) =>
      previous !== null &&
      e.host === previous.host &&
      e.epoch === previous.epoch &&
      e.sequence === previous.sequence + 1,
  );
  if (same !== undefined) return same;
  return (
    [...continuing].sort(
      (a, b) =>
        (a.transactions.firstCommitAt ?? "").localeCompare(b.transactions.firstCommitAt ?? "") ||
        a.sequence - b.sequence,
    )[0] ?? null
  );
}
