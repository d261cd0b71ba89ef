import { BACKUP_ID_PATTERN, CHECK_PROBE_DIR, NAME_PATTERN, clusterPrefix, newBackupId } from "./keys";
import type { ServerFlavor } from "./manifest";
import { schemaFor } from "./schema";
import { parser } from "./validate";

/**
 * The binary log archive (DESIGN §3): write-once segments of a server's binary log, each with a ledger entry
 * written after it, grouped by the host that archived them and the epoch (one continuous chain) they belong
 * to. The archiver (`mysql-backup binlog`) writes them; `restore --until` and the verifier read them.
 *
 *   <prefix>/<cluster>/binlogs/<host>/<epoch>/epoch.json                        why the chain began
 *   <prefix>/<cluster>/binlogs/<host>/<epoch>/<sequence>-<stamp>.binlog         the segment's bytes
 *   <prefix>/<cluster>/binlogs/<host>/<epoch>/<sequence>-<stamp>.ledger.json    its ledger entry (last)
 *
 * A binlog file name is never part of an identity: failovers, `RESET MASTER` and hosts restored from a backup
 * reuse names. The key carries the archiving host, the epoch (a new one whenever the archiver cannot prove it
 * continues the previous chain) and a sequence within the epoch; `stamp` is the commit time of the segment's
 * first transaction (UTC second), so a listing alone tells which segments a point in time needs.
 */

export const BINLOG_FORMAT_VERSION = 1;

/** The key segment below `<prefix>/<cluster>/` that holds the cluster's binary log archive. */
export const BINLOGS_DIR = "binlogs";
export const EPOCH_OBJECT = "epoch.json";
export const SEGMENT_SUFFIX = ".binlog";
export const LEDGER_SUFFIX = ".ledger.json";

/** An epoch id sorts by the time it began, like a backup id: `20261130T162631Z-3fa9c1`. */
export const EPOCH_PATTERN = BACKUP_ID_PATTERN;
const epochPattern = new RegExp(EPOCH_PATTERN);

/** MariaDB GTID list (`0-1-55,1-2-3`, one per domain) or MySQL GTID set (`uuid:1-5:7,uuid2:1-3`), may be empty. */
export const GTID_TEXT_PATTERN =
  "^$|^\\d+-\\d+-\\d+(,\\d+-\\d+-\\d+)*$|^[0-9a-f-]{36}(:\\d+(-\\d+)?)+(,[0-9a-f-]{36}(:\\d+(-\\d+)?)+)*$";

/** Where one chain of one archiving host lives. */
export interface BinlogEpochRef {
  prefix: string;
  cluster: string;
  /** The archiving host (config `host`): the source identity, with the epoch. */
  host: string;
  epoch: string;
}

/** One segment of an epoch. */
export interface BinlogSegmentRef extends BinlogEpochRef {
  /** 1, 2, … within the epoch, without holes. */
  sequence: number;
  /** Commit time of the segment's first transaction (or its first event when it holds none). */
  firstAt: Date;
}

/** A new epoch id for a chain that begins at `now`. */
export function newEpochId(now: Date = new Date(), random?: Buffer): string {
  return newBackupId(now, random);
}

/** `<prefix>/<cluster>/binlogs/` — the cluster's archive; replicas may only create objects below it. */
export function binlogArchivePrefix(prefix: string, cluster: string): string {
  return `${clusterPrefix(prefix, cluster)}${BINLOGS_DIR}/`;
}

/** `<prefix>/<cluster>/binlogs/<host>/<epoch>/`. */
export function epochPrefix(ref: BinlogEpochRef): string {
  if (!new RegExp(NAME_PATTERN).test(ref.host))
    throw new Error(`host "${ref.host}" must match ${NAME_PATTERN}`);
  if (!epochPattern.test(ref.epoch)) throw new Error(`epoch "${ref.epoch}" must match ${EPOCH_PATTERN}`);
  return `${binlogArchivePrefix(ref.prefix, ref.cluster)}${ref.host}/${ref.epoch}/`;
}

export const epochRecordKey = (ref: BinlogEpochRef): string => epochPrefix(ref) + EPOCH_OBJECT;

/**
 * `<prefix>/<cluster>/binlogs/<host>/_check/<id>.json`: `mysql-backup check`'s create-only probe of the
 * archive. Outside the layout (`_check` is no epoch), so every reader skips it; the lifecycle expires it.
 */
export function binlogCheckProbeKey(prefix: string, cluster: string, host: string, at: Date): string {
  if (!new RegExp(NAME_PATTERN).test(host)) throw new Error(`host "${host}" must match ${NAME_PATTERN}`);
  return `${binlogArchivePrefix(prefix, cluster)}${host}/${CHECK_PROBE_DIR}/${newBackupId(at)}.json`;
}

/** `20261130T163053Z`: the second a segment's first transaction committed. */
function stamp(at: Date): string {
  return at
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d{3}Z$/, "Z");
}

function segmentStem(ref: BinlogSegmentRef): string {
  if (!Number.isInteger(ref.sequence) || ref.sequence < 1 || ref.sequence > 9_999_999_999)
    throw new Error(`segment sequence ${ref.sequence} must be an integer from 1 to 9999999999`);
  return `${epochPrefix(ref)}${String(ref.sequence).padStart(10, "0")}-${stamp(ref.firstAt)}`;
}

export const segmentKey = (ref: BinlogSegmentRef): string => segmentStem(ref) + SEGMENT_SUFFIX;
export const ledgerKey = (ref: BinlogSegmentRef): string => segmentStem(ref) + LEDGER_SUFFIX;

/** What a key below the archive prefix names. */
export type BinlogObject =
  { kind: "epoch"; ref: BinlogEpochRef } | { kind: "segment" | "ledger"; ref: BinlogSegmentRef };

const objectName = /^(\d{10})-(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z(\.binlog|\.ledger\.json)$/;

/**
 * Reads a key of the archive back into its parts, or null for a key outside the layout (which readers skip:
 * the verifier's verdicts live beside segments). Round-trips exactly: the key rebuilt from the parts must be it.
 */
export function parseBinlogKey(prefix: string, cluster: string, key: string): BinlogObject | null {
  const root = binlogArchivePrefix(prefix, cluster);
  if (!key.startsWith(root)) return null;
  const parts = key.slice(root.length).split("/");
  if (parts.length !== 3 || !epochPattern.test(parts[1])) return null;
  const [host, epoch, name] = parts;
  const base = { prefix, cluster, host, epoch };
  if (name === EPOCH_OBJECT) return epochRecordKey(base) === key ? { kind: "epoch", ref: base } : null;
  const m = objectName.exec(name);
  if (m === null) return null;
  const firstAt = new Date(`${m[2]}-${m[3]}-${m[4]}T${m[5]}:${m[6]}:${m[7]}Z`);
  const ref: BinlogSegmentRef = { ...base, sequence: Number(m[1]), firstAt };
  const kind = m[8] === SEGMENT_SUFFIX ? "segment" : "ledger";
  try {
    return (kind === "segment" ? segmentKey(ref) : ledgerKey(ref)) === key ? { kind, ref } : null;
  } catch {
    return null;
  }
}

/** The server whose binary log a segment or epoch holds. */
export interface BinlogServer {
  flavor: ServerFlavor;
  /** `x.y.z`. */
  version: string;
  /** `@@server_id` when the archiver read it. */
  serverId: number;
  /** MySQL `@@server_uuid`; null on MariaDB, which has none. */
  serverUuid: string | null;
}

/**
 * The ledger entry of one segment, written after the segment itself: a segment without one is incomplete
 * (like a backup without its manifest) and no reader uses it. Enough to check the segment without a restore
 * (sha256, size, offsets in the source file, GTID continuity with the previous entry) and to replay exactly
 * the transactions a restore needs.
 */
export interface BinlogSegmentEntry {
  formatVersion: typeof BINLOG_FORMAT_VERSION;
  cluster: string;
  host: string;
  epoch: string;
  sequence: number;
  /** The segment object this entry describes. */
  segmentKey: string;
  /** The ledger key of the segment before this one in the epoch; null for the epoch's first. */
  previousLedgerKey: string | null;
  server: BinlogServer;
  /**
   * Where the bytes came from: `[startOffset, endOffset)` of binlog file `name`. The segment object is the
   * file's first bytes (magic number and Format_description event, `headerBytes` of them) followed by exactly
   * those bytes, so every segment is a binlog file of its own that `mariadb-binlog`/`mysqlbinlog` read.
   * The segments of one file tile it without holes; `endsFile` marks the one that ends it (its last event is
   * the ROTATE or STOP event).
   */
  file: {
    name: string;
    /** sha256 of the file's name and its first events (up to the first transaction): tells a reused name apart. */
    identity: string;
    headerBytes: number;
    startOffset: number;
    endOffset: number;
    endsFile: boolean;
  };
  /**
   * GTIDs, as the server's flavor writes them. MariaDB: `before`/`after` are GTID positions (the last GTID
   * per domain, `0-1-55,1-2-3`), `first`/`last` the first and last GTID per domain in the segment. MySQL:
   * `before`/`after` are GTID sets (executed before the first and after the last transaction), `set` the
   * segment's own GTIDs, `first`/`last` its first and last GTID. `first`/`last` are null when the segment
   * holds no transaction (only the events around a file's rotation).
   */
  gtid: { before: string; after: string; first: string | null; last: string | null; set: string | null };
  /** Every event of the segment after its header: how many, and the timestamps of the first and last. */
  events: { count: number; firstAt: string; lastAt: string };
  /**
   * Whole transactions (each from its GTID event to its commit): how many, and the commit times (the GTID
   * event's timestamp, second resolution on MariaDB, microseconds on MySQL 8) of the first and last.
   */
  transactions: { count: number; firstCommitAt: string | null; lastCommitAt: string | null };
  /** Size of the segment object. */
  bytes: number;
  sha256: string;
  /** When the segment object was in S3 (the ledger entry is written right after). */
  archivedAt: string;
}

/** Why the archiver began a new chain instead of continuing the previous one. */
export type EpochReason =
  /** No local state: a first run, or a host whose state was lost (the previous chain, if any, is unknown). */
  | "first-run"
  /** The binlog the state points at is gone and the server's binlog starts over (`RESET MASTER`). */
  | "reset-master"
  /** The binlog file was replaced by one with another history (a host restored from a backup, a clone). */
  | "history-changed"
  /** Transactions the chain needs were purged before they were archived: the GTIDs in `missing` are lost. */
  | "gap";

/**
 * `epoch.json`: written before an epoch's first segment, saying why the chain began and what it continues
 * from. An epoch with `missing` set is a gap record: those GTIDs are in no segment of this host, so a restore
 * across them is refused (unless another host archived them).
 */
export interface BinlogEpochRecord {
  formatVersion: typeof BINLOG_FORMAT_VERSION;
  cluster: string;
  host: string;
  epoch: string;
  startedAt: string;
  reason: EpochReason;
  /** A sentence for on-call: what the archiver found. */
  detail: string;
  server: BinlogServer;
  /** The chain this one follows on this host, as the archiver's state recorded it; null when unknown. */
  previous: { epoch: string; sequence: number; gtidAfter: string; lastCommitAt: string | null } | null;
  /** The GTID position (MariaDB) or set (MySQL) the epoch's first segment continues from. */
  gtidStart: string;
  /** The GTIDs lost between `previous` and this epoch (MariaDB: per domain `d-s-n..d-s-m`; MySQL: a set). */
  missing: string | null;
}

const gtidText = { type: "string", pattern: GTID_TEXT_PATTERN } as const;
const nullableGtid = { type: ["string", "null"], pattern: GTID_TEXT_PATTERN } as const;
const sha256 = { type: "string", pattern: "^[0-9a-f]{64}$" } as const;
const count = { type: "integer", minimum: 0 } as const;
const time = { type: "string", format: "date-time" } as const;
const nullableTime = { type: ["string", "null"], format: "date-time" } as const;
const server = {
  type: "object",
  additionalProperties: false,
  required: ["flavor", "version", "serverId", "serverUuid"],
  properties: {
    flavor: { enum: ["mysql", "mariadb"] },
    version: { type: "string", minLength: 1 },
    serverId: count,
    serverUuid: { type: ["string", "null"] },
  },
} as const;
const identity = {
  cluster: { type: "string", pattern: NAME_PATTERN },
  host: { type: "string", pattern: NAME_PATTERN },
  epoch: { type: "string", pattern: EPOCH_PATTERN },
} as const;

export const segmentEntrySchema = schemaFor<BinlogSegmentEntry>()({
  $id: "https://mysql-backup-pipeline/binlog-ledger-v1.json",
  type: "object",
  additionalProperties: false,
  required: [
    "formatVersion",
    "cluster",
    "host",
    "epoch",
    "sequence",
    "segmentKey",
    "previousLedgerKey",
    "server",
    "file",
    "gtid",
    "events",
    "transactions",
    "bytes",
    "sha256",
    "archivedAt",
  ],
  properties: {
    formatVersion: { const: BINLOG_FORMAT_VERSION },
    ...identity,
    sequence: { type: "integer", minimum: 1 },
    segmentKey: { type: "string", minLength: 1, maxLength: 1024 },
    previousLedgerKey: { type: ["string", "null"], minLength: 1, maxLength: 1024 },
    server,
    file: {
      type: "object",
      additionalProperties: false,
      required: ["name", "identity", "headerBytes", "startOffset", "endOffset", "endsFile"],
      properties: {
        name: { type: "string", minLength: 1 },
        identity: sha256,
        headerBytes: { type: "integer", minimum: 4 },
        startOffset: { type: "integer", minimum: 4 },
        endOffset: { type: "integer", minimum: 4 },
        endsFile: { type: "boolean" },
      },
    },
    gtid: {
      type: "object",
      additionalProperties: false,
      required: ["before", "after", "first", "last", "set"],
      properties: {
        before: gtidText,
        after: gtidText,
        first: nullableGtid,
        last: nullableGtid,
        set: nullableGtid,
      },
    },
    events: {
      type: "object",
      additionalProperties: false,
      required: ["count", "firstAt", "lastAt"],
      properties: { count: { type: "integer", minimum: 1 }, firstAt: time, lastAt: time },
    },
    transactions: {
      type: "object",
      additionalProperties: false,
      required: ["count", "firstCommitAt", "lastCommitAt"],
      properties: { count, firstCommitAt: nullableTime, lastCommitAt: nullableTime },
    },
    bytes: { type: "integer", minimum: 1 },
    sha256,
    archivedAt: time,
  },
});

export const epochRecordSchema = schemaFor<BinlogEpochRecord>()({
  $id: "https://mysql-backup-pipeline/binlog-epoch-v1.json",
  type: "object",
  additionalProperties: false,
  required: [
    "formatVersion",
    "cluster",
    "host",
    "epoch",
    "startedAt",
    "reason",
    "detail",
    "server",
    "previous",
    "gtidStart",
    "missing",
  ],
  properties: {
    formatVersion: { const: BINLOG_FORMAT_VERSION },
    ...identity,
    startedAt: time,
    reason: { enum: ["first-run", "reset-master", "history-changed", "gap"] },
    detail: { type: "string", minLength: 1 },
    server,
    previous: {
      type: ["object", "null"],
      additionalProperties: false,
      required: ["epoch", "sequence", "gtidAfter", "lastCommitAt"],
      properties: {
        epoch: { type: "string", pattern: EPOCH_PATTERN },
        sequence: count,
        gtidAfter: gtidText,
        lastCommitAt: nullableTime,
      },
    },
    gtidStart: gtidText,
    missing: { type: ["string", "null"], minLength: 1 },
  },
});

/** Validates a ledger entry (on write and on read); throws a ContractError naming every bad key. */
export const parseSegmentEntry = parser("binlog ledger entry", segmentEntrySchema);
/** Validates an epoch record. */
export const parseEpochRecord = parser("binlog epoch record", epochRecordSchema);

export const BINLOG_ARCHIVED = "binlog.archived";

/**
 * `binlog.archived` v1: sent by the archiver after a segment's ledger entry is in S3, so the verifier can
 * check the segment on arrival (sha256, every event's checksum, GTID continuity). Delivered at least once: a
 * segment may be announced twice (after a restart), never with different contents. The verifier trusts
 * nothing in it that it cannot re-check against the ledger entry.
 */
export interface BinlogArchivedMessage {
  type: typeof BINLOG_ARCHIVED;
  version: 1;
  bucket: string;
  cluster: string;
  host: string;
  epoch: string;
  sequence: number;
  ledgerKey: string;
  segmentKey: string;
  sha256: string;
  /** The GTID position/set after the segment. */
  gtidAfter: string;
  archivedAt: string;
}

export const binlogArchivedSchema = schemaFor<BinlogArchivedMessage>()({
  $id: "https://mysql-backup-pipeline/binlog-archived-v1.json",
  type: "object",
  additionalProperties: false,
  required: [
    "type",
    "version",
    "bucket",
    "cluster",
    "host",
    "epoch",
    "sequence",
    "ledgerKey",
    "segmentKey",
    "sha256",
    "gtidAfter",
    "archivedAt",
  ],
  properties: {
    type: { const: BINLOG_ARCHIVED },
    version: { const: 1 },
    bucket: { type: "string", pattern: "^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$" },
    ...identity,
    sequence: { type: "integer", minimum: 1 },
    ledgerKey: { type: "string", minLength: 1, maxLength: 1024 },
    segmentKey: { type: "string", minLength: 1, maxLength: 1024 },
    sha256,
    gtidAfter: gtidText,
    archivedAt: time,
  },
});

const parseArchivedMessage = parser("binlog.archived message", binlogArchivedSchema);

/** Parses an SQS body: JSON first, then the schema; both failures name what is wrong. */
export function parseBinlogArchived(body: string | undefined): BinlogArchivedMessage {
  let value: unknown;
  try {
    value = JSON.parse(body ?? "");
  } catch (e) {
    throw new Error(
      `binlog.archived message is not JSON (${(e as Error).message}): ${String(body).slice(0, 120)}`,
      { cause: e },
    );
  }
  return parseArchivedMessage(value);
}
