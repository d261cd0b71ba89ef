import { crc32 } from "node:zlib";
import type { ServerFlavor } from "../../contracts";
import { parseState, type Gtid, type GtidState } from "./gtid-state";

/**
 * The binary log's v4 event format as MariaDB (10.x) and MySQL (5.7, 8.0, 8.4) write it: a 4-byte magic
 * number, a Format_description event (FDE) that says how the rest is laid out and whether events carry a
 * CRC32, then events, each a 19-byte header and a body. Only what PITR needs is decoded: GTIDs (MariaDB GTID
 * and GTID_LIST, MySQL GTID and PREVIOUS_GTIDS), transaction ends (XID, COMMIT/ROLLBACK queries, XA PREPARE,
 * MySQL's compressed transaction payload), ROTATE and STOP. Every event's CRC32 is checked when the FDE says
 * events carry one (`mariadb-binlog --verify-binlog-checksum` exits 0 on a bad one, so it is never trusted
 * for that).
 */

export const BINLOG_MAGIC = Buffer.from([0xfe, 0x62, 0x69, 0x6e]);
/** What MySQL writes instead of the magic number when binlog_encryption is on. */
const MYSQL_ENCRYPTED_MAGIC = Buffer.from([0xfd, 0x62, 0x69, 0x6e]);
export const EVENT_HEADER_BYTES = 19;
const CHECKSUM_BYTES = 4;

/** Event type codes (v4), both flavors. */
export const EventType = {
  Query: 2,
  Stop: 3,
  Rotate: 4,
  FormatDescription: 15,
  Xid: 16,
  Heartbeat: 27,
  MysqlGtid: 33,
  MysqlAnonymousGtid: 34,
  MysqlPreviousGtids: 35,
  XaPrepare: 38,
  MysqlTransactionPayload: 40,
  MysqlTaggedGtid: 42,
  MariadbAnnotateRows: 160,
  MariadbBinlogCheckpoint: 161,
  MariadbGtid: 162,
  MariadbGtidList: 163,
  MariadbStartEncryption: 164,
} as const;

/** MariaDB GTID event flags2. */
const FL_STANDALONE = 1;
const FL_GROUP_COMMIT_ID = 2;

/** The fixed header of every event. */
export interface EventHeader {
  /** Seconds since the epoch (the statement's, or for GTID and XID events the commit's). */
  timestamp: number;
  type: number;
  serverId: number;
  /** Header, body and checksum. */
  length: number;
  /** Where the event ended in the file it was first written to (`end_log_pos`). */
  nextPosition: number;
  flags: number;
}

/** The Format_description event: how the file's events are laid out. */
export interface FormatDescription {
  flavor: ServerFlavor;
  binlogVersion: number;
  /** As the server wrote it, e.g. `10.11.19-MariaDB-0+deb12u1-log` or `8.0.36`. */
  serverVersion: string;
  /** Whether events end with a CRC32 (binlog_checksum=CRC32). */
  checksum: boolean;
  /** Bytes of the FDE event itself. */
  length: number;
  /** Post-header length of each event type (index = type − 1). */
  postHeaderLengths: Buffer;
  /** The server set this while the file was open (LOG_EVENT_BINLOG_IN_USE_F). */
  inUse: boolean;
}

/** What PITR reads from an event's body. */
export type EventDetail =
  | { kind: "gtid"; gtid: Gtid; standalone: boolean; commitMicros: number | null }
  | { kind: "gtid-list"; gtids: Gtid[] }
  | { kind: "previous-gtids"; set: GtidState }
  | { kind: "query"; head: string }
  | { kind: "rotate"; nextFile: string; position: number }
  | { kind: "commit" }
  | { kind: "stop" }
  | { kind: "format" }
  | { kind: "other" };

/** One event: where it is in the buffer read, its header and decoded detail. */
export interface BinlogEvent {
  /** Offset of the event's first byte in the buffer (or file) it was read from. */
  offset: number;
  header: EventHeader;
  detail: EventDetail;
}

/** The binary log cannot be read as one: corrupt, truncated inside an event, or a format this tool does not read. */
export class BinlogFormatError extends Error {
  constructor(
    message: string,
    /** Offset of the event (or byte) that is wrong. */
    readonly offset: number,
  ) {
    super(message);
    this.name = "BinlogFormatError";
  }
}

/** Reads an event header at `at`. */
export function readHeader(buf: Buffer, at: number): EventHeader {
  return {
    timestamp: buf.readUInt32LE(at),
    type: buf.readUInt8(at + 4),
    serverId: buf.readUInt32LE(at + 5),
    length: buf.readUInt32LE(at + 9),
    nextPosition: buf.readUInt32LE(at + 13),
    flags: buf.readUInt16LE(at + 17),
  };
}

/** Checks the magic number; throws naming what the file is instead. */
export function checkMagic(buf: Buffer, what: string): void {
  if (buf.length < 4) throw new BinlogFormatError(`${what} is shorter than the binlog magic number`, 0);
  if (buf.subarray(0, 4).equals(BINLOG_MAGIC)) return;
  if (buf.subarray(0, 4).equals(MYSQL_ENCRYPTED_MAGIC))
    throw new BinlogFormatError(
      `${what} is an encrypted MySQL binlog (binlog_encryption=ON); it cannot be read`,
      0,
    );
  throw new BinlogFormatError(`${what} does not start with the binlog magic number (fe 62 69 6e)`, 0);
}

/**
 * Parses the FDE that follows the magic number at offset 4; `buf` must hold it whole. The checksum
 * algorithm byte sits before the last 4 bytes of the event, which checksum-aware servers always reserve.
 */
export function parseFormatDescription(buf: Buffer, what = "the binlog"): FormatDescription {
  checkMagic(buf, what);
  if (buf.length < 4 + EVENT_HEADER_BYTES)
    throw new BinlogFormatError(`${what} ends inside its first event`, 4);
  const header = readHeader(buf, 4);
  if (header.type !== EventType.FormatDescription)
    throw new BinlogFormatError(
      `${what} starts with event type ${header.type}, not a Format_description event`,
      4,
    );
  if (buf.length < 4 + header.length)
    throw new BinlogFormatError(`${what} ends inside its Format_description`, 4);
  const body = 4 + EVENT_HEADER_BYTES;
  const end = 4 + header.length;
  const algorithm = buf.readUInt8(end - CHECKSUM_BYTES - 1);
  if (algorithm !== 0 && algorithm !== 1 && algorithm !== 255)
    throw new BinlogFormatError(
      `${what} uses binlog checksum algorithm ${algorithm}, which this tool does not read`,
      4,
    );
  const checksum = algorithm === 1;
  const serverVersion = buf.toString("latin1", body + 2, body + 52).replace(/\0.*$/s, "");
  const fde: FormatDescription = {
    flavor: /mariadb/i.test(serverVersion) ? "mariadb" : "mysql",
    binlogVersion: buf.readUInt16LE(body),
    serverVersion,
    checksum,
    length: header.length,
    postHeaderLengths: Buffer.from(buf.subarray(body + 57, end - CHECKSUM_BYTES - 1)),
    inUse: (header.flags & 0x1) !== 0,
  };
  if (fde.binlogVersion !== 4)
    throw new BinlogFormatError(`${what} is binlog format v${fde.binlogVersion}; only v4 is read`, 4);
  if (checksum) verifyChecksum(buf, 4, header.length, what);
  return fde;
}

function verifyChecksum(buf: Buffer, at: number, length: number, what: string): void {
  const expected = buf.readUInt32LE(at + length - CHECKSUM_BYTES);
  const actual = crc32(checksummedBytes(buf, at, length));
  if (expected !== actual) {
    throw new BinlogFormatError(
      `${what}: the event at offset ${at} fails its CRC32 check (stored ${hex(expected)}, computed ${hex(actual)})`,
      at,
    );
  }
}

/**
 * The bytes an event's CRC32 covers. A server sets the in-use flag of the FDE while the file is open and
 * clears it in place when it closes the file, without rewriting the checksum, so the checksum is over the
 * FDE with that flag clear.
 */
function checksummedBytes(buf: Buffer, at: number, length: number): Buffer {
  const bytes = buf.subarray(at, at + length - CHECKSUM_BYTES);
  if (bytes[4] !== EventType.FormatDescription || (bytes.readUInt16LE(17) & 0x1) === 0) return bytes;
  const copy = Buffer.from(bytes);
  copy.writeUInt16LE(copy.readUInt16LE(17) & ~0x1, 17);
  return copy;
}

const hex = (n: number) => `0x${n.toString(16).padStart(8, "0")}`;

/** Options of `readEvents`. */
export interface ReadOptions {
  /** Names the file in errors. */
  what: string;
  /**
   * Where `buf[0]` stood in the file the events were first written to; each event's `end_log_pos` must then
   * equal its end there. Null skips the check (e.g. events after relocation whose origin is unknown).
   */
  origin: number | null;
}

/**
 * Reads the whole events in `buf` from `start`: returns them and where the first incomplete event begins
 * (`buf.length` when none is). A corrupt event (bad length, CRC, end position, a body too short for its
 * type) throws a BinlogFormatError naming its offset.
 */
export function readEvents(
  buf: Buffer,
  start: number,
  fde: FormatDescription,
  options: ReadOptions,
): { events: BinlogEvent[]; end: number } {
  const events: BinlogEvent[] = [];
  const minimum = EVENT_HEADER_BYTES + (fde.checksum ? CHECKSUM_BYTES : 0);
  let at = start;
  while (at + EVENT_HEADER_BYTES <= buf.length) {
    const header = readHeader(buf, at);
    if (header.length < minimum || header.length > 1024 * 1024 * 1024 + 1024)
      throw new BinlogFormatError(
        `${options.what}: the event at offset ${at} has an impossible length ${header.length}`,
        at,
      );
    if (at + header.length > buf.length) break;
    if (fde.checksum) verifyChecksum(buf, at, header.length, options.what);
    if (options.origin !== null && header.nextPosition !== 0) {
      const endInFile = options.origin + at + header.length;
      if (header.nextPosition !== endInFile && header.nextPosition !== endInFile % 2 ** 32)
        throw new BinlogFormatError(
          `${options.what}: the event at offset ${at} says it ends at ${header.nextPosition}, but it ends at ${endInFile}`,
          at,
        );
    }
    events.push({ offset: at, header, detail: decode(buf, at, header, fde, options.what) });
    at += header.length;
  }
  return { events, end: at };
}

/** The body of the event at `at`, without its checksum. */
function bodyOf(buf: Buffer, at: number, header: EventHeader, fde: FormatDescription): Buffer {
  return buf.subarray(at + EVENT_HEADER_BYTES, at + header.length - (fde.checksum ? CHECKSUM_BYTES : 0));
}

function decode(
  buf: Buffer,
  at: number,
  header: EventHeader,
  fde: FormatDescription,
  what: string,
): EventDetail {
  const body = bodyOf(buf, at, header, fde);
  const need = (bytes: number, name: string) => {
    if (body.length < bytes)
      throw new BinlogFormatError(
        `${what}: the ${name} event at offset ${at} is ${body.length} bytes, too short`,
        at,
      );
  };
  switch (header.type) {
    case EventType.MariadbGtid:
    case EventType.MariadbGtidList:
      return decodeMariadb(body, at, header, what);
    case EventType.MysqlGtid:
      return decodeMysqlGtid(body, at, what);
    case EventType.MysqlAnonymousGtid:
      throw new BinlogFormatError(
        `${what}: an anonymous transaction at offset ${at}: PITR needs gtid_mode=ON on MySQL`,
        at,
      );
    case EventType.MysqlTaggedGtid:
      throw new BinlogFormatError(
        `${what}: a tagged GTID (MySQL 8.3+) at offset ${at}; tags are not supported`,
        at,
      );
    case EventType.MariadbStartEncryption:
      throw new BinlogFormatError(
        `${what} is encrypted (encrypt_binlog=ON) from offset ${at}; it cannot be read`,
        at,
      );
    case EventType.MysqlPreviousGtids:
      return { kind: "previous-gtids", set: decodePreviousGtids(body, at, what) };
    case EventType.Query: {
      const postHeader = fde.postHeaderLengths[EventType.Query - 1] ?? 13;
      need(postHeader, "QUERY");
      const dbLength = body.readUInt8(8);
      const statusLength = body.readUInt16LE(11);
      const sqlAt = postHeader + statusLength + dbLength + 1;
      need(sqlAt, "QUERY");
      return { kind: "query", head: body.toString("latin1", sqlAt, Math.min(body.length, sqlAt + 48)) };
    }
    case EventType.Xid:
    case EventType.XaPrepare:
    case EventType.MysqlTransactionPayload:
      return { kind: "commit" };
    case EventType.Rotate: {
      need(8, "ROTATE");
      return {
        kind: "rotate",
        position: safe(body.readBigUInt64LE(0), what, at),
        nextFile: body.toString("latin1", 8),
      };
    }
    case EventType.Stop:
      return { kind: "stop" };
    case EventType.FormatDescription:
      return { kind: "format" };
    default:
      return { kind: "other" };
  }
}

/** MariaDB's GTID event (sequence, domain, flags; the server id is the header's) and GTID_LIST. */
function decodeMariadb(body: Buffer, at: number, header: EventHeader, what: string): EventDetail {
  const need = (bytes: number, name: string) => {
    if (body.length < bytes)
      throw new BinlogFormatError(
        `${what}: the ${name} event at offset ${at} is ${body.length} bytes, too short`,
        at,
      );
  };
  if (header.type === EventType.MariadbGtid) {
    need(13, "GTID");
    const flags = body.readUInt8(12);
    if (flags & FL_GROUP_COMMIT_ID) need(21, "GTID");
    const gtid: Gtid = {
      flavor: "mariadb",
      domain: body.readUInt32LE(8),
      server: header.serverId,
      seq: safe(body.readBigUInt64LE(0), what, at),
    };
    return { kind: "gtid", gtid, standalone: (flags & FL_STANDALONE) !== 0, commitMicros: null };
  }
  need(4, "GTID_LIST");
  const n = body.readUInt32LE(0) & 0x0fffffff;
  need(4 + n * 16, "GTID_LIST");
  const gtids: Gtid[] = [];
  for (let i = 0; i < n; i++) {
    const p = 4 + i * 16;
    gtids.push({
      flavor: "mariadb",
      domain: body.readUInt32LE(p),
      server: body.readUInt32LE(p + 4),
      seq: safe(body.readBigUInt64LE(p + 8), what, at),
    });
  }
  return { kind: "gtid-list", gtids };
}

function safe(value: bigint, what: string, at: number): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER))
    throw new BinlogFormatError(`${what}: a number beyond 2^53 in the event at offset ${at}`, at);
  return Number(value);
}

function uuidAt(body: Buffer, p: number): string {
  const h = body.toString("hex", p, p + 16);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** A 7-byte little-endian integer (MySQL's commit timestamps). */
function uint56(body: Buffer, p: number): number {
  return body.readUInt32LE(p) + body.readUIntLE(p + 4, 3) * 2 ** 32;
}

/**
 * MySQL GTID event: flags (1), source uuid (16), number (8), logical clock (1 + 8 + 8), then since 8.0.1 the
 * immediate commit timestamp (7 bytes, µs; its top bit says the original one follows, else it is the same).
 */
function decodeMysqlGtid(body: Buffer, at: number, what: string): EventDetail {
  if (body.length < 25)
    throw new BinlogFormatError(`${what}: the GTID event at offset ${at} is too short`, at);
  const gtid: Gtid = {
    flavor: "mysql",
    source: uuidAt(body, 1),
    gno: safe(body.readBigUInt64LE(17), what, at),
  };
  let commitMicros: number | null = null;
  if (body.length >= 42 + 7) {
    const immediate = uint56(body, 42);
    const hasOriginal = immediate >= 2 ** 55;
    commitMicros = hasOriginal && body.length >= 49 + 7 ? uint56(body, 49) : immediate % 2 ** 55;
  }
  return { kind: "gtid", gtid, standalone: false, commitMicros };
}

/** MySQL PREVIOUS_GTIDS: n_sids (8), then per source uuid (16), n_intervals (8), [start, end) pairs (8 + 8). */
function decodePreviousGtids(body: Buffer, at: number, what: string): GtidState {
  const bad = (why: string) =>
    new BinlogFormatError(`${what}: the PREVIOUS_GTIDS event at offset ${at} ${why}`, at);
  if (body.length < 8) throw bad("is too short");
  const sids = body.readBigUInt64LE(0);
  if (sids >> 56n !== 0n) throw bad("uses the tagged format of MySQL 8.3+, which is not supported");
  const parts: string[] = [];
  let p = 8;
  for (let i = 0n; i < sids; i++) {
    if (p + 24 > body.length) throw bad("ends inside a source");
    const source = uuidAt(body, p);
    const intervals = Number(body.readBigUInt64LE(p + 16));
    p += 24;
    if (p + intervals * 16 > body.length) throw bad("ends inside its intervals");
    for (let j = 0; j < intervals; j++, p += 16) {
      const start = safe(body.readBigUInt64LE(p), what, at);
      const end = safe(body.readBigUInt64LE(p + 8), what, at);
      // Intervals are [start, end) on disk and inclusive in the text form.
      if (end <= start) throw bad(`holds an empty interval ${start}-${end}`);
      parts.push(`${source}:${start}-${end - 1}`);
    }
  }
  return parseState("mysql", parts.join(","));
}
