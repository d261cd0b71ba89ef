import type { ServerFlavor } from "../../contracts";
import type { BinlogTransaction } from "../common/binlog-transactions";
import { PipelineError } from "../common/errors";
import { formatGtid, lastPerDomain, parseState, type Gtid, type GtidState } from "../common/gtid-state";
import type { VerifiedSegment } from "./segments";

/**
 * Which transactions of the verified chain a replay applies, from the exact GTID state the restored server
 * recovered to: in each segment, the transactions the state already holds must come first and end with the
 * very GTIDs the state ends with (so the segment continues this history, not another with the same numbers);
 * every transaction after them is applied, in binlog order, up to the target. A target GTID that the chain
 * passes without meeting is refused.
 */

/** Where the replay stops. */
export type ReplayStop =
  /** After the transaction that makes the state cover this position/set; it must be met exactly. */
  | { kind: "gtid"; gtid: GtidState }
  /** Before the first transaction committed after this instant (ms). */
  | { kind: "time"; atMs: number }
  /** After the chain's last transaction. */
  | { kind: "end" };

/** The byte ranges to replay from one segment. */
export interface ReplayPiece {
  segment: VerifiedSegment;
  /** `[start, end)` within the segment file, in order; adjacent transactions merged. */
  ranges: Array<[number, number]>;
  transactions: number;
}

/** What the replay applies and where it ends. */
export interface ReplaySelection {
  pieces: ReplayPiece[];
  /** The GTID state after the last applied transaction. */
  reached: GtidState;
  transactions: number;
  /** Commit time of the last applied transaction (ms), or null when none is applied. */
  lastCommitMs: number | null;
  /** The last applied transaction's GTID. */
  lastGtid: string | null;
}

/** The chain does not continue the restored server's history: refused before any replay. */
function notContinuing(segment: VerifiedSegment, why: string): PipelineError {
  const { entry } = segment;
  return new PipelineError(
    "PitrRefused",
    `segment ${entry.segmentKey} does not continue the restored snapshot's history: ${why}; nothing was replayed`,
    "the archive holds another history at this point (a reset binlog, a restored or cloned host): restore from a snapshot taken after it, or to a point before it",
  );
}

const domainOf = (g: Gtid) => (g.flavor === "mariadb" ? `domain ${g.domain}` : g.source);

/**
 * Checks, at the segment's first transaction the chain lacks, that the ones before it the chain holds
 * (`held`, a prefix of the segment) end where the chain's state ends: MariaDB, per domain the state has moved past the segment's start, the last
 * held GTID is exactly the state's (server id included); MySQL, the held GTIDs are exactly what the state
 * holds beyond the segment's start.
 */
function checkStitch(flavor: ServerFlavor, segment: VerifiedSegment, state: GtidState, held: Gtid[]): void {
  const before = parseState(flavor, segment.entry.gtid.before);
  if (flavor === "mysql") {
    const heldSet = parseState("mysql", held.map(formatGtid).join(","));
    const beyond = before.clone();
    beyond.absorb(heldSet);
    const lacking = beyond.missingFrom(state);
    if (lacking !== null)
      throw notContinuing(
        segment,
        `the state holds ${lacking}, which the segment neither starts from nor holds`,
      );
    return;
  }
  const lastHeld = new Map<string, Gtid>();
  for (const g of held) lastHeld.set(domainOf(g), g);
  for (const gtid of lastPerDomain(state)) {
    if (before.has(gtid)) continue;
    const found = lastHeld.get(domainOf(gtid));
    if (found === undefined || formatGtid(found) !== formatGtid(gtid))
      throw notContinuing(
        segment,
        `the state ends ${domainOf(gtid)} with ${formatGtid(gtid)}, the segment has ${found ? formatGtid(found) : "none of that domain"} there`,
      );
  }
}

/** Chooses the transactions to apply; see the module comment. */
export function selectTransactions(
  flavor: ServerFlavor,
  segments: VerifiedSegment[],
  start: GtidState,
  stop: ReplayStop,
): ReplaySelection {
  const state = start.clone();
  const pieces: ReplayPiece[] = [];
  let transactions = 0;
  let last: BinlogTransaction | null = null;
  let done = false;
  for (const segment of segments) {
    if (done) break;
    const held: Gtid[] = [];
    const piece: ReplayPiece = { segment, ranges: [], transactions: 0 };
    let stitched = false;
    for (const t of segment.transactions) {
      if (state.has(t.gtid)) {
        if (stitched)
          throw notContinuing(
            segment,
            `${formatGtid(t.gtid)} comes after transactions the state lacks, yet the state holds it`,
          );
        held.push(t.gtid);
        continue;
      }
      if (!stitched) {
        checkStitch(flavor, segment, state, held);
        stitched = true;
      }
      if (reachedStop(state, t, stop, segment)) {
        done = true;
        break;
      }
      const range = piece.ranges.at(-1);
      if (range !== undefined && range[1] === t.start) range[1] = t.end;
      else piece.ranges.push([t.start, t.end]);
      piece.transactions++;
      state.add(t.gtid);
      last = t;
      transactions++;
    }
    if (piece.transactions > 0) pieces.push(piece);
  }
  if (stop.kind === "gtid") checkTargetMet(state, stop.gtid, last);
  return {
    pieces,
    reached: state,
    transactions,
    lastCommitMs: last?.commitMs ?? null,
    lastGtid: last === null ? null : formatGtid(last.gtid),
  };
}

/** Whether `t` is past the stop: the state already meets the target, or `t` commits after the time. */
function reachedStop(
  state: GtidState,
  t: BinlogTransaction,
  stop: ReplayStop,
  segment: VerifiedSegment,
): boolean {
  if (stop.kind === "time") return t.commitMs > stop.atMs;
  if (stop.kind !== "gtid") return false;
  if (state.covers(stop.gtid)) return true;
  const passes = lastPerDomain(stop.gtid).some(
    (g) =>
      g.flavor === "mariadb" &&
      t.gtid.flavor === "mariadb" &&
      g.domain === t.gtid.domain &&
      g.seq < t.gtid.seq,
  );
  if (passes)
    throw new PipelineError(
      "PitrRefused",
      `GTID ${stop.gtid.toString()} is not in the archive: in ${segment.entry.segmentKey} the binlog goes from ${state.toString()} to ${formatGtid(t.gtid)}`,
      "name a GTID the cluster committed (`mariadb-binlog` on a segment lists them), or use --until TIME",
    );
  return false;
}

/** A GTID target must be met exactly: the state reached ends each of its domains with its very GTID. */
function checkTargetMet(state: GtidState, target: GtidState, last: BinlogTransaction | null): void {
  const exact =
    state.covers(target) &&
    lastPerDomain(target).every((g) => lastPerDomain(state).some((s) => formatGtid(s) === formatGtid(g)));
  if (exact) return;
  throw new PipelineError(
    "PitrRefused",
    `the archived chain does not reach GTID ${target.toString()}: it ends at ${state.toString()}${last ? ` (last transaction ${formatGtid(last.gtid)})` : ""}`,
    "name a GTID the archive holds (`mysql-backup restore list` shows how far it reaches), or use --until TIME",
  );
}
