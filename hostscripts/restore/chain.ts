import type { BinlogSegmentEntry, ServerFlavor } from "../../contracts";
import { parseState, type GtidState } from "../common/gtid-state";
import type { ArchivedEpoch } from "./archive";

/**
 * The segments a point-in-time restore replays, chosen from the ledger alone (nothing downloaded yet): from
 * the snapshot's GTID state, each next segment must begin at or before where the chain stands (its `before`
 * is held by the chain: nothing between them is missing) and end beyond it (its `after` holds all the chain
 * holds, and more). The chain stays on one host's
 * epoch while that goes on, and moves to another archiving host or epoch only where it must. It stops at the
 * target, or where no segment continues it: a gap, named by the GTIDs the archive lacks.
 *
 * Whether each chosen segment really continues the chain (it holds the very transactions the chain's state
 * ends with, so it is the same history) is checked on its bytes, after the download (replay.ts).
 */

/** Where a point-in-time restore goes. */
export type PitrTarget =
  /** Every transaction committed at or before this instant (binlog order: up to the first one after it). */
  | { kind: "time"; at: Date }
  /** Exactly this GTID position (MariaDB) or set (MySQL). */
  | { kind: "gtid"; gtid: GtidState }
  /** The newest archived transaction that the chain reaches without a gap. */
  | { kind: "latest" };

/** One segment of the chain and the state the chain holds when it begins. */
export interface ChainStep {
  entry: BinlogSegmentEntry;
  from: string;
}

/** Where the chain stops short of the target. */
export interface ChainGap {
  /** The chain's state where it stops, and the commit time of its last transaction. */
  reachedGtid: string;
  reachedAt: string | null;
  /** The GTIDs no archived segment holds, between the chain and the next archived transactions. */
  missing: string;
  /** The first archived segment past the gap. */
  resumesWith: {
    host: string;
    epoch: string;
    sequence: number;
    firstCommitAt: string | null;
    before: string;
  };
}

/** The chosen segments. */
export interface ChainPlan {
  steps: ChainStep[];
  /** The state after the last step's transactions, and the commit time of its last. */
  reach: string;
  reachAt: string | null;
  /** Set when the chain stops before the target because segments are missing. */
  gap: ChainGap | null;
  /** For a time target beyond the newest archived transaction: that transaction's commit time. */
  archiveEndsAt: string | null;
}

interface Candidate {
  entry: BinlogSegmentEntry;
  before: GtidState;
  after: GtidState;
  firstMs: number;
  lastMs: number;
}

const ms = (iso: string | null) => (iso === null ? NaN : Date.parse(iso));

/** Chooses the segments from `start` towards `target`; see the module comment. */
export function planChain(
  flavor: ServerFlavor,
  epochs: ArchivedEpoch[],
  start: GtidState,
  target: PitrTarget,
): ChainPlan {
  const candidates: Candidate[] = epochs
    .flatMap((e) => e.entries)
    .filter((entry) => entry.transactions.count > 0 && entry.server.flavor === flavor)
    .map((entry) => ({
      entry,
      before: parseState(flavor, entry.gtid.before),
      after: parseState(flavor, entry.gtid.after),
      firstMs: ms(entry.transactions.firstCommitAt),
      lastMs: ms(entry.transactions.lastCommitAt),
    }));
  const needed = (c: Candidate) => target.kind !== "time" || c.firstMs <= target.at.getTime();
  const current = start.clone();
  const steps: ChainStep[] = [];
  let last: Candidate | null = null;
  for (;;) {
    if (target.kind === "gtid" && current.covers(target.gtid)) break;
    if (target.kind === "time" && last !== null && last.lastMs > target.at.getTime()) break;
    const next = choose(
      candidates.filter((c) => needed(c) && current.covers(c.before) && ahead(c, current)),
      last,
    );
    if (next === null) break;
    steps.push({ entry: next.entry, from: current.toString() });
    current.absorb(next.after);
    last = next;
  }
  const beyond = candidates.filter((c) => needed(c) && ahead(c, current));
  const newest = Math.max(...candidates.map((c) => c.lastMs), -Infinity);
  return {
    steps,
    reach: current.toString(),
    reachAt: last?.entry.transactions.lastCommitAt ?? null,
    gap: gapAfter(current, last, beyond, target),
    archiveEndsAt:
      target.kind === "time" && newest < target.at.getTime() && Number.isFinite(newest)
        ? new Date(newest).toISOString()
        : null,
  };
}

/**
 * The segment's history includes everything the chain holds and goes further: its `after` covers the chain's
 * state and adds to it. A segment whose `after` does not cover the chain belongs to another history (a reset
 * binlog, another cluster's numbers) and never continues it.
 */
function ahead(c: Candidate, current: GtidState): boolean {
  return c.after.covers(current) && !current.covers(c.after);
}

/** The next segment: the same epoch's next one when it qualifies, else the one that reaches furthest. */
function choose(qualified: Candidate[], last: Candidate | null): Candidate | null {
  if (qualified.length === 0) return null;
  if (last !== null) {
    const same = qualified.find(
      (c) =>
        c.entry.host === last.entry.host &&
        c.entry.epoch === last.entry.epoch &&
        c.entry.sequence === last.entry.sequence + 1,
    );
    if (same !== undefined) return same;
  }
  return [...qualified].sort(
    (a, b) =>
      b.lastMs - a.lastMs ||
      a.entry.host.localeCompare(b.entry.host) ||
      a.entry.epoch.localeCompare(b.entry.epoch) ||
      a.entry.sequence - b.entry.sequence,
  )[0];
}

/** The gap the chain stops at, when archived transactions it needs lie beyond it. */
function gapAfter(
  current: GtidState,
  last: Candidate | null,
  beyond: Candidate[],
  target: PitrTarget,
): ChainGap | null {
  if (target.kind === "gtid" && current.covers(target.gtid)) return null;
  if (beyond.length === 0) return null;
  const first = [...beyond].sort((a, b) => a.firstMs - b.firstMs)[0];
  const missing =
    current.missingFrom(first.before) ??
    `none by number, but ${first.entry.host}/${first.entry.epoch} does not continue the chain (another history)`;
  return {
    reachedGtid: current.toString(),
    reachedAt: last?.entry.transactions.lastCommitAt ?? null,
    missing,
    resumesWith: {
      host: first.entry.host,
      epoch: first.entry.epoch,
      sequence: first.entry.sequence,
      firstCommitAt: first.entry.transactions.firstCommitAt,
      before: first.entry.gtid.before,
    },
  };
}
