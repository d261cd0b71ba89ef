import type { EpochReason, ServerFlavor } from "../../contracts";
import { formatGtid, parseState, type Gtid, type GtidState } from "../common/gtid-state";
import type { BinlogFileHeader } from "./binlog-file";
import type { ListedBinlog } from "../common/binlog-server";

/**
 * Where the chain goes on when the archiver starts, or when the binlog it read is gone: the same chain at
 * the byte it stopped (proven by the file's identity, or by finding its exact GTID state in the server's
 * binlogs), or a new epoch that says why (first run, a gap, RESET MASTER, another history) — never a guess.
 */

/** Where reading goes on. */
export type Continuation =
  | { kind: "continue"; file: string; offset: number; note: string | null }
  | {
      kind: "new-epoch";
      reason: EpochReason;
      file: string;
      offset: number;
      before: GtidState;
      missing: string | null;
      detail: string;
    }
  | { kind: "wait"; detail: string };

/** What the decision reads of the server's binlogs. */
export interface BinlogProbe {
  flavor: ServerFlavor;
  files(): Promise<ListedBinlog[]>;
  header(name: string): Promise<BinlogFileHeader>;
  /**
   * The transaction boundary, scanning from the start of `file` on through later files, where the GTID
   * state (from the file's opening state) equals `target`, or null when the scan ends without meeting it.
   */
  find(file: string, target: GtidState): Promise<{ file: string; offset: number } | null>;
  /** The GTID of the first transaction in `file`, or null when it has none yet. */
  firstTransaction(file: string): Promise<Gtid | null>;
}

/** Where the last chain stopped, as the local state recorded it. */
export interface ChainTail {
  file: string;
  identity: string;
  offset: number;
  /** The GTID state after the last segment. */
  gtid: GtidState;
}

const same = (a: GtidState, b: GtidState) => a.covers(b) && b.covers(a);

/** Where a first run (no local state) begins. */
export async function firstRun(probe: BinlogProbe, startFrom: "oldest" | "current"): Promise<Continuation> {
  const files = await probe.files();
  if (files.length === 0) return { kind: "wait", detail: "the server lists no binary log" };
  const file = startFrom === "oldest" ? files[0] : files[files.length - 1];
  const header = await probe.header(file.name);
  return {
    kind: "new-epoch",
    reason: "first-run",
    file: file.name,
    offset: header.bodyOffset,
    before: header.announced,
    missing: null,
    detail: `no local state: a new chain begins at the ${startFrom} binlog ${file.name} (GTID state ${header.announced.toString() || "empty"})`,
  };
}

/**
 * Where the chain that stopped at `tail` goes on. `tail.file` may be gone (purged, or the server's binlog
 * was reset) or replaced by a file of the same name with another history.
 */
export async function resumeChain(probe: BinlogProbe, tail: ChainTail): Promise<Continuation> {
  const files = await probe.files();
  if (files.length === 0) return { kind: "wait", detail: "the server lists no binary log" };
  const listed = files.find((f) => f.name === tail.file);
  if (listed !== undefined) {
    const header = await probe.header(tail.file);
    if (header.identity === tail.identity && listed.size >= tail.offset)
      return { kind: "continue", file: tail.file, offset: tail.offset, note: null };
  }
  for (const file of files) {
    const header = await probe.header(file.name);
    if (same(header.announced, tail.gtid))
      return {
        kind: "continue",
        file: file.name,
        offset: header.bodyOffset,
        note: `${tail.file} is gone; ${file.name} opens with the state the chain ended at`,
      };
  }
  const oldest = await probe.header(files[0].name);
  if (tail.gtid.covers(oldest.announced) && !oldest.announced.isEmpty()) {
    const found = await probe.find(files[0].name, tail.gtid);
    if (found !== null)
      return {
        kind: "continue",
        ...found,
        note: `${tail.file} was replaced; the chain's GTID state ${tail.gtid.toString()} was found at ${found.file}:${found.offset}`,
      };
  }
  return newEpochAfter(probe, tail, oldest);
}

/** The chain cannot go on: a new epoch at the oldest binlog, saying why. */
async function newEpochAfter(
  probe: BinlogProbe,
  tail: ChainTail,
  oldest: BinlogFileHeader,
): Promise<Continuation> {
  const at = { file: oldest.name, offset: oldest.bodyOffset };
  const ended = tail.gtid.toString() || "empty";
  if (oldest.announced.covers(tail.gtid)) {
    const missing = tail.gtid.missingFrom(oldest.announced);
    return {
      kind: "new-epoch",
      reason: "gap",
      ...at,
      before: oldest.announced,
      missing,
      detail: `the binlogs after the chain's end (${ended}) were purged before they were archived: the oldest binlog ${oldest.name} starts at ${oldest.announced.toString()}; lost: ${missing}`,
    };
  }
  if (oldest.announced.isEmpty()) return afterReset(probe, tail, oldest);
  return {
    kind: "new-epoch",
    reason: "history-changed",
    ...at,
    before: oldest.announced,
    missing: null,
    detail: `the server's binlogs hold another history than the chain (which ended at ${ended}): ${oldest.name} starts at ${oldest.announced.toString()} (a host restored from a backup, or a clone)`,
  };
}

/**
 * The binlog starts over with no GTID state (RESET MASTER). On MariaDB the new file's first transaction
 * tells whether the history goes on (its sequence follows the chain's), skipped transactions (a gap) or
 * restarted its numbers; the epoch's `before` is the state just before that transaction, which is all the
 * file vouches for. MySQL's RESET MASTER also clears gtid_executed: numbers restart, a new history.
 */
async function afterReset(
  probe: BinlogProbe,
  tail: ChainTail,
  oldest: BinlogFileHeader,
): Promise<Continuation> {
  const at = { file: oldest.name, offset: oldest.bodyOffset };
  const ended = tail.gtid.toString() || "empty";
  if (probe.flavor === "mysql")
    return {
      kind: "new-epoch",
      reason: "reset-master",
      ...at,
      before: oldest.announced,
      missing: null,
      detail: `the binlog was reset (RESET MASTER): ${oldest.name} starts with an empty GTID set; the chain ended at ${ended}`,
    };
  const first = await probe.firstTransaction(oldest.name);
  if (first === null || first.flavor !== "mariadb")
    return {
      kind: "wait",
      detail: `the binlog was reset; waiting for the first transaction in ${oldest.name}`,
    };
  const before = parseState(
    "mariadb",
    first.seq > 1 ? `${first.domain}-${first.server}-${first.seq - 1}` : "",
  );
  const missing = tail.gtid.missingFrom(before);
  // The chain already holds a transaction numbered like the first one: the numbers started over.
  const rewound = tail.gtid.has(first);
  return {
    kind: "new-epoch",
    reason: missing !== null ? "gap" : "reset-master",
    ...at,
    before,
    missing,
    detail:
      `the binlog was reset (RESET MASTER): ${oldest.name} starts empty and its first transaction is ${formatGtid(first)}; the chain ended at ${ended}` +
      (missing !== null
        ? `; lost: ${missing}`
        : !rewound
          ? "; the history goes on without a gap"
          : "; its sequence numbers do not follow the chain's, so a restore cannot cross into this epoch"),
  };
}
