import type { BackupManifest, CapturedPosition, ServerFlavor } from "../../contracts";

/**
 * GTIDs of both flavors as states a binlog is read into, and the one question PITR asks of them: does a
 * state hold a transaction, and what lies between two states (gtid.ts compares positions read from a server,
 * for the lock-free backup's bounds). MariaDB identifies a transaction by domain-server-sequence and a server's state by
 * a position (the last GTID per domain; sequence numbers increase within a domain, which gtid_strict_mode
 * enforces). MySQL identifies it by source uuid and number, and a state by the set of executed GTIDs.
 */

/** One transaction's GTID. MariaDB: `domain-server-seq`; MySQL: `uuid:gno` (`source` is the uuid). */
export type Gtid =
  | { flavor: "mariadb"; domain: number; server: number; seq: number }
  | { flavor: "mysql"; source: string; gno: number };

/** The text a server prints for a GTID: `0-1-55`, `3e11fa47-71ca-11e1-9e33-c80aa9429562:23`. */
export function formatGtid(gtid: Gtid): string {
  return gtid.flavor === "mariadb"
    ? `${gtid.domain}-${gtid.server}-${gtid.seq}`
    : `${gtid.source}:${gtid.gno}`;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Parses one GTID of either flavor; throws naming the text when it is neither. */
export function parseGtid(text: string): Gtid {
  const t = text.trim();
  const maria = /^(\d+)-(\d+)-(\d+)$/.exec(t);
  if (maria) return { flavor: "mariadb", domain: int(maria[1]), server: int(maria[2]), seq: int(maria[3]) };
  const mysql = /^([0-9a-fA-F-]{36}):(\d+)$/.exec(t);
  if (mysql && UUID.test(mysql[1].toLowerCase()))
    return { flavor: "mysql", source: mysql[1].toLowerCase(), gno: int(mysql[2]) };
  throw new Error(`"${text}" is not a GTID (MariaDB domain-server-seq or MySQL uuid:number)`);
}

function int(text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n))
    throw new Error(`GTID number ${text} is beyond what this tool handles (2^53)`);
  return n;
}

/**
 * A server's GTID state: what it has executed (MySQL) or where it stands per domain (MariaDB). Mutable:
 * `add` records one more transaction; `clone` before keeping a copy.
 */
export interface GtidState {
  readonly flavor: ServerFlavor;
  /** Records a transaction as executed. */
  add(gtid: Gtid): void;
  /** Whether the state already holds the transaction (a replay skips it). */
  has(gtid: Gtid): boolean;
  /** Whether this state holds everything `other` holds. */
  covers(other: GtidState): boolean;
  /** What `ahead` holds that this state lacks, as text for a person; null when nothing. */
  missingFrom(ahead: GtidState): string | null;
  /** Records everything `other` holds too (MariaDB: the later GTID per domain; MySQL: the union). */
  absorb(other: GtidState): void;
  clone(): GtidState;
  isEmpty(): boolean;
  /** The canonical text: `0-1-55,1-2-3` (domains in order) or `uuid:1-5:7,…` (uuids in order). */
  toString(): string;
}

/** An empty state of the flavor. */
export function emptyState(flavor: ServerFlavor): GtidState {
  return flavor === "mariadb" ? new MariadbPosition(new Map()) : new MysqlGtidSet(new Map());
}

/** Parses a GTID position (MariaDB, `0-1-55,1-2-3`) or set (MySQL); whitespace and newlines are ignored. */
export function parseState(flavor: ServerFlavor, text: string | null): GtidState {
  const clean = (text ?? "").replace(/\s+/g, "");
  return flavor === "mariadb" ? MariadbPosition.parse(clean) : MysqlGtidSet.parse(clean);
}

/** The position a MariaDB GTID list (binlog state: several servers per domain) stands for. */
export function positionOfList(gtids: Gtid[]): GtidState {
  const position = emptyState("mariadb");
  for (const gtid of gtids) position.add(gtid);
  return position;
}

type Last = { server: number; seq: number };

/** MariaDB: the last GTID per domain. */
class MariadbPosition implements GtidState {
  readonly flavor = "mariadb" as const;
  constructor(private readonly domains: Map<number, Last>) {}

  static parse(text: string): MariadbPosition {
    const domains = new Map<number, Last>();
    for (const part of text.split(",").filter(Boolean)) {
      const gtid = parseGtid(part);
      if (gtid.flavor !== "mariadb") throw new Error(`"${text}" mixes a MySQL GTID into a MariaDB position`);
      if (domains.has(gtid.domain)) throw new Error(`"${text}" names domain ${gtid.domain} twice`);
      domains.set(gtid.domain, { server: gtid.server, seq: gtid.seq });
    }
    return new MariadbPosition(domains);
  }

  private expect(gtid: Gtid): Extract<Gtid, { flavor: "mariadb" }> {
    if (gtid.flavor !== "mariadb") throw new Error(`a MySQL GTID (${formatGtid(gtid)}) in a MariaDB binlog`);
    return gtid;
  }

  add(gtid: Gtid): void {
    const g = this.expect(gtid);
    const last = this.domains.get(g.domain);
    // A lower sequence number than the domain's last would break strict mode; the position keeps the highest.
    if (last === undefined || g.seq >= last.seq) this.domains.set(g.domain, { server: g.server, seq: g.seq });
  }

  has(gtid: Gtid): boolean {
    const g = this.expect(gtid);
    return (this.domains.get(g.domain)?.seq ?? 0) >= g.seq;
  }

  covers(other: GtidState): boolean {
    return [...asPosition(other).domains].every(([d, last]) => (this.domains.get(d)?.seq ?? 0) >= last.seq);
  }

  missingFrom(ahead: GtidState): string | null {
    const gaps: string[] = [];
    for (const [d, last] of [...asPosition(ahead).domains].sort(([a], [b]) => a - b)) {
      const from = (this.domains.get(d)?.seq ?? 0) + 1;
      if (from > last.seq) continue;
      const n = last.seq - from + 1;
      gaps.push(
        `${d}-*-${from}..${d}-${last.server}-${last.seq} (${n} transaction${n === 1 ? "" : "s"} of domain ${d})`,
      );
    }
    return gaps.length === 0 ? null : gaps.join(", ");
  }

  absorb(other: GtidState): void {
    for (const gtid of asPosition(other).gtids()) this.add(gtid);
  }

  /** The last GTID of each domain, in domain order. */
  gtids(): Gtid[] {
    return [...this.domains]
      .sort(([a], [b]) => a - b)
      .map(([domain, last]) => ({ flavor: "mariadb", domain, ...last }));
  }

  clone(): MariadbPosition {
    return new MariadbPosition(new Map(this.domains));
  }

  isEmpty(): boolean {
    return this.domains.size === 0;
  }

  toString(): string {
    return this.gtids().map(formatGtid).join(",");
  }
}

function asPosition(state: GtidState): MariadbPosition {
  if (!(state instanceof MariadbPosition))
    throw new Error("a MySQL GTID set compared with a MariaDB position");
  return state;
}

/** The last GTID of each domain of a MariaDB position (empty for MySQL sets). */
export function lastPerDomain(state: GtidState): Gtid[] {
  return state instanceof MariadbPosition ? state.gtids() : [];
}

/** Inclusive intervals of GTID numbers, sorted and merged. */
type Intervals = Array<[number, number]>;

/** MySQL: the set of executed GTIDs. */
class MysqlGtidSet implements GtidState {
  readonly flavor = "mysql" as const;
  constructor(readonly sources: Map<string, Intervals>) {}

  static parse(text: string): MysqlGtidSet {
    const set = new MysqlGtidSet(new Map());
    for (const part of text.split(",").filter(Boolean)) {
      const [uuid, ...ranges] = part.split(":");
      const source = uuid.toLowerCase();
      if (!UUID.test(source) || ranges.length === 0)
        throw new Error(`"${part}" is not a MySQL GTID set element`);
      for (const range of ranges) {
        const m = /^(\d+)(?:-(\d+))?$/.exec(range);
        if (!m) throw new Error(`"${part}" has a bad interval "${range}"`);
        set.addRange(source, int(m[1]), int(m[2] ?? m[1]));
      }
    }
    return set;
  }

  addRange(source: string, start: number, end: number): void {
    if (end < start) throw new Error(`GTID interval ${source}:${start}-${end} ends before it starts`);
    const merged: Intervals = [];
    let [s, e] = [start, end];
    for (const [a, b] of this.sources.get(source) ?? []) {
      if (b + 1 < s || a > e + 1) merged.push([a, b]);
      else [s, e] = [Math.min(a, s), Math.max(b, e)];
    }
    merged.push([s, e]);
    this.sources.set(
      source,
      merged.sort((x, y) => x[0] - y[0]),
    );
  }

  private expect(gtid: Gtid): Extract<Gtid, { flavor: "mysql" }> {
    if (gtid.flavor !== "mysql") throw new Error(`a MariaDB GTID (${formatGtid(gtid)}) in a MySQL binlog`);
    return gtid;
  }

  add(gtid: Gtid): void {
    const g = this.expect(gtid);
    this.addRange(g.source, g.gno, g.gno);
  }

  has(gtid: Gtid): boolean {
    const g = this.expect(gtid);
    return (this.sources.get(g.source) ?? []).some(([a, b]) => a <= g.gno && g.gno <= b);
  }

  covers(other: GtidState): boolean {
    return asSet(other).minus(this).isEmpty();
  }

  /** The GTIDs of this set that `other` lacks. */
  minus(other: GtidState): MysqlGtidSet {
    const theirs = asSet(other).sources;
    const result = new MysqlGtidSet(new Map());
    for (const [source, intervals] of this.sources) {
      for (const [a, b] of intervals) {
        let from = a;
        for (const [c, d] of theirs.get(source) ?? []) {
          if (d < from || c > b) continue;
          if (c > from) result.addRange(source, from, c - 1);
          from = Math.max(from, d + 1);
        }
        if (from <= b) result.addRange(source, from, b);
      }
    }
    return result;
  }

  absorb(other: GtidState): void {
    for (const [source, intervals] of asSet(other).sources)
      for (const [a, b] of intervals) this.addRange(source, a, b);
  }

  missingFrom(ahead: GtidState): string | null {
    const missing = asSet(ahead).minus(this);
    return missing.isEmpty() ? null : missing.toString();
  }

  clone(): MysqlGtidSet {
    return new MysqlGtidSet(new Map([...this.sources].map(([s, i]) => [s, i.map(([a, b]) => [a, b])])));
  }

  isEmpty(): boolean {
    return this.sources.size === 0;
  }

  toString(): string {
    return [...this.sources]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(
        ([source, intervals]) =>
          `${source}:${intervals.map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`)).join(":")}`,
      )
      .join(",");
  }
}

function asSet(state: GtidState): MysqlGtidSet {
  if (!(state instanceof MysqlGtidSet)) throw new Error("a MariaDB position compared with a MySQL GTID set");
  return state;
}

/** Whether two states hold exactly the same GTIDs. */
export function sameState(a: GtidState, b: GtidState): boolean {
  return a.covers(b) && b.covers(a);
}

/** The GTIDs of `after` that `before` lacks (MySQL), as a canonical set text; null for MariaDB. */
export function setDifference(after: GtidState, before: GtidState): string | null {
  return after instanceof MysqlGtidSet ? after.minus(before).toString() : null;
}

/** A captured position's GTID value for a flavor: MariaDB's binlog position, MySQL's executed set. */
export function gtidOf(
  flavor: ServerFlavor,
  position: Pick<CapturedPosition, "gtidBinlogPos" | "gtidExecuted">,
): string | null {
  return flavor === "mariadb" ? position.gtidBinlogPos : position.gtidExecuted;
}

/**
 * The GTID state a backup's data holds, from its manifest: exact under a lock that held commits, the lower
 * bound read before the snapshot for a lock-free backup.
 */
export function manifestStart(manifest: BackupManifest): GtidState | null {
  const text = gtidOf(manifest.server.flavor, manifest.position);
  return text === null ? null : parseState(manifest.server.flavor, text);
}
