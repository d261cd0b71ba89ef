import type { BinlogSegmentEntry, BinlogServer, ServerFlavor } from "../../contracts";
import { parseState, type GtidState } from "./gtid-state";

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

/**
 * What the planner reads of a segment's ledger entry. `status` also passes one link per epoch (its first
 * segment's `before` to its newest's `after`): the archiver proved the segments between continuous.
 */
export type ChainLink = Pick<BinlogSegmentEntry, "host" | "epoch" | "sequence" | "gtid" | "transactions"> & {
  server: Pick<BinlogServer, "flavor">;
};

/** One segment of the chain and the state the chain holds when it begins. */
export interface ChainStep<L extends ChainLink = BinlogSegmentEntry> {
  entry: L;
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
export interface ChainPlan<L extends ChainLink = BinlogSegmentEntry> {
  steps: ChainStep<L>[];
  /** The state after the last step's transactions, and the commit time of its last. */
  reach: string;
  reachAt: string | null;
  /** Set when the chain stops before the target because segments are missing. */
  gap: ChainGap | null;
  /** For a time target beyond the newest archived transaction: that transaction's commit time. */
  archiveEndsAt: string | null;
}

interface Candidate<L extends ChainLink = ChainLink> {
  entry: L;
  before: GtidState;
  after: GtidState;
  firstMs: number;
  lastMs: number;
}

const ms = (iso: string | null) => (iso === null ? NaN : Date.parse(iso));

/** Chooses the segments from `start` towards `target`; see the module comment. */
export function planChain<L extends ChainLink>(
  flavor: ServerFlavor,
  epochs: ReadonlyArray<{ entries: L[] }>,
  start: GtidState,
  target: PitrTarget,
): ChainPlan<L> {
  const candidates: Candidate<L>[] = epochs
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
  const steps: ChainStep<L>[] = [];
  let last: Candidate<L> | null = null;
  for (;;) {
    if (target.kind === "gtid" && current.covers(target.gtid)) break;
    if (target.kind === "time" && last !== null && last.lastMs > target.at.getTime()) break;
    const next: Candidate<L> | null = choose(
      candidates.filter((c) => needed(c) && current.covers(c.before) && ahead(c, current)),
      last,
    );
    if (next === null) break;
    steps.push({ entry: next.entry, from: current.toString() });
    current.absorb(next.after);
    last = next;
  }
  const beyond = candidates.filter((c) => needed(c) && ahead(c, current));
  // A time target the chain has not passed, which nothing continues, yet with archived transactions ahead of
  // it: the segments between are missing (their transactions may be at or before the point), so stopping
  // here would claim the point without reaching it. Seen through the first segment listed after the point.
  const short =
    target.kind === "time" &&
    beyond.length === 0 &&
    (last === null || last.lastMs <= target.at.getTime()) &&
    !candidates.some((c) => ahead(c, current) && current.covers(c.before));
  const unreached = short ? candidates.filter((c) => ahead(c, current)) : [];
  const newest = Math.max(...candidates.map((c) => c.lastMs), -Infinity);
  return {
    steps,
    reach: current.toString(),
    reachAt: last?.entry.transactions.lastCommitAt ?? null,
    gap: gapAfter(current, last, beyond.length > 0 ? beyond : unreached, target),
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
function choose<C extends Candidate>(qualified: C[], last: C | null): C | null {
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

/** A span of time any second of which `restore --until` can reach. */
export interface PitrWindow {
  from: string;
  to: string;
  /** The GTID state at `to`. */
  toGtid: string;
  /** The verified snapshots a restore into this window starts from, oldest first. */
  snapshots: string[];
}

/** A verified snapshot a window can start from: when it completed and the GTID state its data holds. */
export interface WindowSnapshot {
  backupId: string;
  completedAt: string;
  flavor: ServerFlavor;
  start: GtidState;
}

/**
 * The restorable windows (`restore list`, `status`): from each verified snapshot, how far the archived chain
 * reaches without a gap; overlapping spans merge into windows ("any second from … to …"), oldest first.
 */
export function restorableWindows<L extends ChainLink>(
  epochs: ReadonlyArray<{ entries: L[] }>,
  snapshots: WindowSnapshot[],
): PitrWindow[] {
  const spans = snapshots.map((s): PitrWindow => {
    const plan = planChain(s.flavor, epochs, s.start, { kind: "latest" });
    return {
      from: s.completedAt,
      to: plan.reachAt !== null && plan.reachAt > s.completedAt ? plan.reachAt : s.completedAt,
      toGtid: plan.reach,
      snapshots: [s.backupId],
    };
  });
  const sorted = spans.sort((a, b) => a.from.localeCompare(b.from));
  const merged: PitrWindow[] = [];
  for (const span of sorted) {
    const last = merged.at(-1);
    if (last !== undefined && span.from <= last.to) {
      if (span.to > last.to) Object.assign(last, { to: span.to, toGtid: span.toGtid });
      last.snapshots.push(...span.snapshots);
    } else merged.push(span);
  }
  return merged;
}
