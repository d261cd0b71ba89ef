import { createHash } from "node:crypto";
import type {
  BinlogArchivedMessage,
  BinlogEpochRecord,
  BinlogSegmentEntry,
  SegmentCheckName,
  SegmentCheckResult,
} from "../../contracts";
import { BinlogFormatError } from "../common/binlog-events";
import { scanBinlog, type ScannedBinlog } from "../common/binlog-scan";
import { formatGtid, parseState, sameState } from "../common/gtid-state";

/**
 * The checks of one binlog segment (contracts/segment-verdict.ts), as pure functions of what the verifier
 * read: the announcement, the ledger entry, the object's bytes and what precedes the segment in its chain.
 * They run in SEGMENT_CHECKS order and stop at the first failure (what follows cannot be trusted then).
 *
 * Event times: MariaDB stamps an event with the start of the statement that wrote it (a transaction's GTID
 * event with its last statement's), so one long statement that commits after shorter, later ones steps back
 * by its own duration; binlog order is the commit order. A step back within `timeSkewSeconds` is that; a
 * larger one is a clock step on the source or bytes of another history, and misplaces every `restore --until
 * TIME` near it.
 */

/** What precedes a segment in its chain. */
export type Predecessor =
  /** The previous segment of the epoch, by its ledger entry. */
  | { kind: "segment"; entry: BinlogSegmentEntry }
  /** The epoch's record: the segment is the epoch's first. */
  | { kind: "epoch"; record: BinlogEpochRecord }
  /** Neither is in the archive (yet), or `problem` says why the one there cannot be used: `key` names it. */
  | { kind: "missing"; key: string; problem?: string };

/** Everything a segment's verdict is reached on. */
export interface SegmentEvidence {
  message: BinlogArchivedMessage;
  /** The ledger entry, or why there is none usable. */
  entry: BinlogSegmentEntry | { problem: string };
  /** The object's bytes; null when it is not in S3. */
  bytes: Buffer | null;
  predecessor: Predecessor;
  /** How far a commit time may step back behind the newest one before it. */
  timeSkewSeconds: number;
}

/** The checks run and what the object held. */
export interface SegmentFindings {
  checks: SegmentCheckResult[];
  events: number;
  transactions: number;
  /** sha256 of the bytes read, when any were. */
  sha256: string | null;
}

/** A check that failed: ends the run. */
class Failed extends Error {
  constructor(
    readonly check: SegmentCheckName,
    message: string,
  ) {
    super(message);
  }
}

/** Runs the checks in order; see the module comment. */
export function checkSegment(evidence: SegmentEvidence): SegmentFindings {
  const findings: SegmentFindings = { checks: [], events: 0, transactions: 0, sha256: null };
  const pass = (name: SegmentCheckName, detail: string) =>
    findings.checks.push({ name, passed: true, detail });
  try {
    const entry = checkLedger(evidence);
    pass("ledger", `ledger entry ${evidence.message.ledgerKey} agrees with the announcement`);
    findings.sha256 = evidence.bytes && createHash("sha256").update(evidence.bytes).digest("hex");
    pass("object", checkObject(entry, evidence.bytes, findings.sha256));
    const scanned = checkEvents(entry, evidence.bytes!);
    findings.events = scanned.events.length;
    findings.transactions = scanned.transactions.length;
    pass("events", describeEvents(entry, scanned));
    pass("continuity", checkContinuity(entry, evidence.predecessor));
    pass("times", checkTimes(entry, scanned, evidence.predecessor, evidence.timeSkewSeconds));
  } catch (error) {
    if (!(error instanceof Failed)) throw error;
    findings.checks.push({ name: error.check, passed: false, detail: error.message });
  }
  return findings;
}

function checkLedger(evidence: SegmentEvidence): BinlogSegmentEntry {
  const { message, entry } = evidence;
  if ("problem" in entry) throw new Failed("ledger", entry.problem);
  const differs = [
    ["segmentKey", entry.segmentKey, message.segmentKey],
    ["sha256", entry.sha256, message.sha256],
    ["GTID after", entry.gtid.after, message.gtidAfter],
  ].filter(([, a, b]) => a !== b);
  if (differs.length > 0)
    throw new Failed(
      "ledger",
      `the ledger entry and the announcement disagree: ${differs.map(([what, a, b]) => `${what} ${a} in the ledger, ${b} announced`).join("; ")}`,
    );
  return entry;
}

function checkObject(entry: BinlogSegmentEntry, bytes: Buffer | null, sha256: string | null): string {
  if (bytes === null)
    throw new Failed(
      "object",
      `the segment object is missing from S3; its ledger entry says ${entry.bytes} bytes`,
    );
  if (bytes.length !== entry.bytes || sha256 !== entry.sha256)
    throw new Failed(
      "object",
      `${bytes.length} bytes with sha256 ${sha256}; the ledger says ${entry.bytes} bytes with ${entry.sha256}`,
    );
  return `${bytes.length} bytes, sha256 ${sha256} as in the ledger`;
}

/** Every event with its CRC32 and end position, the transactions and their GTIDs as the ledger has them. */
function checkEvents(entry: BinlogSegmentEntry, bytes: Buffer): ScannedBinlog {
  let scanned: ScannedBinlog;
  try {
    scanned = scanBinlog(bytes, entry.segmentKey, entry.file.startOffset - entry.file.headerBytes);
  } catch (error) {
    if (error instanceof BinlogFormatError) throw new Failed("events", error.message);
    throw error;
  }
  const got = {
    header: scanned.headerBytes,
    events: scanned.events.length,
    transactions: scanned.transactions.length,
  };
  const want = {
    header: entry.file.headerBytes,
    events: entry.events.count,
    transactions: entry.transactions.count,
  };
  const wrong = (Object.keys(got) as Array<keyof typeof got>).filter((k) => got[k] !== want[k]);
  if (wrong.length > 0)
    throw new Failed(
      "events",
      `read ${wrong.map((k) => `${got[k]} ${k === "header" ? "header bytes" : k}`).join(", ")}; the ledger says ${wrong.map((k) => want[k]).join(", ")}`,
    );
  const flavor = entry.server.flavor;
  const state = parseState(flavor, entry.gtid.before);
  for (const t of scanned.transactions) {
    if (state.has(t.gtid))
      throw new Failed(
        "events",
        `transaction ${formatGtid(t.gtid)} at offset ${t.start} repeats one the state before it (${state.toString()}) holds`,
      );
    state.add(t.gtid);
  }
  if (!sameState(state, parseState(flavor, entry.gtid.after)))
    throw new Failed(
      "events",
      `the transactions take ${entry.gtid.before || "(empty)"} to ${state.toString()}, the ledger says ${entry.gtid.after}`,
    );
  return scanned;
}

function describeEvents(entry: BinlogSegmentEntry, scanned: ScannedBinlog): string {
  const checksum = scanned.fde.checksum
    ? "each CRC32 checked"
    : "the server writes no CRC32 (binlog_checksum=NONE)";
  return (
    `${scanned.events.length} events read (${checksum}), ${scanned.transactions.length} transactions ` +
    `${entry.gtid.first ?? "-"}..${entry.gtid.last ?? "-"} taking ${entry.gtid.before || "(empty)"} to ${entry.gtid.after}`
  );
}

/** The segment begins where its predecessor ended: the same GTID state and, within one file, the next byte. */
function checkContinuity(entry: BinlogSegmentEntry, predecessor: Predecessor): string {
  const flavor = entry.server.flavor;
  const before = parseState(flavor, entry.gtid.before);
  if (predecessor.kind === "missing")
    throw new Failed(
      "continuity",
      `what precedes #${entry.sequence} is not in the archive (${predecessor.key} ${predecessor.problem ?? "is missing"}): the transactions before ${entry.gtid.before || "(empty)"} cannot be shown to be archived`,
    );
  if (predecessor.kind === "epoch") {
    const record = predecessor.record;
    if (record.missing !== null)
      throw new Failed(
        "continuity",
        `the chain ${record.host}/${record.epoch} began after a gap: ${record.missing} were purged before they were archived (${record.detail})`,
      );
    if (!sameState(before, parseState(flavor, record.gtidStart)))
      throw new Failed(
        "continuity",
        `the epoch's first segment starts at ${entry.gtid.before}, its record at ${record.gtidStart}`,
      );
    return `the first segment of ${record.host}/${record.epoch} (${record.reason}), starting at ${record.gtidStart || "(empty)"} as its record says`;
  }
  const previous = predecessor.entry;
  if (!sameState(before, parseState(flavor, previous.gtid.after)))
    throw new Failed(
      "continuity",
      `#${entry.sequence} starts at ${entry.gtid.before}, but #${previous.sequence} ended at ${previous.gtid.after}: ` +
        `${parseState(flavor, previous.gtid.after).missingFrom(before) ?? "they are different histories"}`,
    );
  const sameFile = previous.file.name === entry.file.name && previous.file.identity === entry.file.identity;
  if (
    sameFile
      ? previous.file.endsFile || previous.file.endOffset !== entry.file.startOffset
      : !previous.file.endsFile
  )
    throw new Failed(
      "continuity",
      `#${entry.sequence} holds ${entry.file.name} [${entry.file.startOffset}, ${entry.file.endOffset}), but #${previous.sequence} held ${previous.file.name} [${previous.file.startOffset}, ${previous.file.endOffset})${previous.file.endsFile ? " and ended it" : ""}: bytes are missing between them`,
    );
  return `continues #${previous.sequence} (GTID ${previous.gtid.after || "(empty)"}, ${sameFile ? `${entry.file.name} at ${entry.file.startOffset}` : `next file ${entry.file.name}`})`;
}

/** Commit times never step back by more than the skew, within the segment and from its predecessor. */
function checkTimes(
  entry: BinlogSegmentEntry,
  scanned: ScannedBinlog,
  predecessor: Predecessor,
  skewSeconds: number,
): string {
  const first = scanned.events.at(0)?.header.timestamp ?? null;
  const last = scanned.events.at(-1)?.header.timestamp ?? null;
  const recorded = [Date.parse(entry.events.firstAt), Date.parse(entry.events.lastAt)];
  if (first === null || first * 1000 !== recorded[0] || last! * 1000 !== recorded[1])
    throw new Failed(
      "times",
      `the events span ${iso(first)}..${iso(last)}, the ledger says ${entry.events.firstAt}..${entry.events.lastAt}`,
    );
  let newest =
    predecessor.kind === "segment" && predecessor.entry.transactions.lastCommitAt !== null
      ? Date.parse(predecessor.entry.transactions.lastCommitAt)
      : -Infinity;
  let worst = 0;
  for (const t of scanned.transactions) {
    const back = newest - t.commitMs;
    if (back > skewSeconds * 1000)
      throw new Failed(
        "times",
        `transaction ${formatGtid(t.gtid)} committed at ${new Date(t.commitMs).toISOString()}, ${back / 1000}s before one committed ahead of it (${new Date(newest).toISOString()}); at most ${skewSeconds}s is a long statement, more is a clock step or another history`,
      );
    worst = Math.max(worst, back);
    newest = Math.max(newest, t.commitMs);
  }
  return `commit times ${entry.transactions.firstCommitAt ?? "-"}..${entry.transactions.lastCommitAt ?? "-"} in order${worst > 0 ? ` (a step back of ${worst / 1000}s at most)` : ""}`;
}

const iso = (seconds: number | null) => (seconds === null ? "-" : new Date(seconds * 1000).toISOString());
