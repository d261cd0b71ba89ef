/**
 * GTID positions compared as positions, not as text: whether one lies between two others. A lock-free
 * backup's position is the one its restored server recovers to, and it must lie between the positions the
 * replica had just before and just after the snapshot.
 *
 * MariaDB: a list `domain-server-seq,…`, one GTID per replication domain; within a domain sequence numbers
 * only grow (gtid_strict_mode), whichever server wrote them. MySQL: a set `uuid[:tag]:a-b:c,…` of intervals
 * per source (and tag, 8.4); a later position contains an earlier one.
 */

/** A MariaDB GTID list as the highest sequence number per domain. */
export function parseMariadbGtidList(list: string | null): Map<number, bigint> {
  const domains = new Map<number, bigint>();
  for (const item of (list ?? "").split(",")) {
    const gtid = item.trim();
    if (gtid === "") continue;
    const match = /^(\d+)-(\d+)-(\d+)$/.exec(gtid);
    if (match === null) throw new Error(`"${gtid}" is not a MariaDB GTID (domain-server-sequence)`);
    domains.set(Number(match[1]), BigInt(match[3]));
  }
  return domains;
}

/**
 * Whether a MariaDB position lies between `before` and `after` in every domain (a domain a list lacks is at
 * sequence 0); the domains where it does not, as sentences.
 */
export function mariadbBetween(
  before: string | null,
  position: string | null,
  after: string | null,
): string[] {
  const [lo, at, hi] = [before, position, after].map(parseMariadbGtidList);
  const domains = new Set([...lo.keys(), ...at.keys(), ...hi.keys()]);
  const problems: string[] = [];
  for (const domain of [...domains].sort((a, b) => a - b)) {
    const [l, x, h] = [lo, at, hi].map((m) => m.get(domain) ?? 0n);
    if (x < l) problems.push(`domain ${domain}: sequence ${x} is before ${l}, read before the snapshot`);
    if (x > h) problems.push(`domain ${domain}: sequence ${x} is past ${h}, read after the snapshot`);
  }
  return problems;
}

/**
 * The per-domain maximum of MariaDB GTID lists, as a list (`domain-0-seq`; the server id does not order).
 * What a replica that logs what it applies has applied or is committing is bounded by this of its
 * `gtid_slave_pos` and `gtid_binlog_pos`: a transaction enters the binary log state before it commits in InnoDB.
 */
export function mariadbMaxPerDomain(...lists: Array<string | null>): string {
  const max = new Map<number, bigint>();
  for (const list of lists) {
    for (const [domain, seq] of parseMariadbGtidList(list)) {
      if (seq > (max.get(domain) ?? -1n)) max.set(domain, seq);
    }
  }
  return [...max]
    .sort(([a], [b]) => a - b)
    .map(([domain, seq]) => `${domain}-0-${seq}`)
    .join(",");
}

/** Inclusive interval of transaction numbers. */
type Interval = [bigint, bigint];

/** A MySQL GTID set as sorted, merged intervals per `uuid` or `uuid:tag` (uuids lowercased). */
export function parseMysqlGtidSet(set: string | null): Map<string, Interval[]> {
  const sources = new Map<string, Interval[]>();
  for (const item of (set ?? "").replace(/\s+/g, "").split(",")) {
    if (item === "") continue;
    const [uuid, ...rest] = item.split(":");
    if (!/^[0-9a-fA-F-]{36}$/.test(uuid) || rest.length === 0) {
      throw new Error(`"${item}" is not a MySQL GTID set element (uuid:interval…)`);
    }
    let key = uuid.toLowerCase();
    for (const token of rest) {
      const interval = /^(\d+)(?:-(\d+))?$/.exec(token);
      if (interval === null) {
        key = `${uuid.toLowerCase()}:${token.toLowerCase()}`;
        continue;
      }
      const from = BigInt(interval[1]);
      const to = interval[2] === undefined ? from : BigInt(interval[2]);
      sources.set(key, [...(sources.get(key) ?? []), [from, to]]);
    }
  }
  for (const [key, intervals] of sources) sources.set(key, merge(intervals));
  return sources;
}

function merge(intervals: Interval[]): Interval[] {
  const sorted = [...intervals].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const merged: Interval[] = [];
  for (const [from, to] of sorted) {
    const last = merged.at(-1);
    if (last !== undefined && from <= last[1] + 1n) last[1] = to > last[1] ? to : last[1];
    else merged.push([from, to]);
  }
  return merged;
}

/** The parts of `a` not in `b`, as text (`uuid:91-100`); an empty list when `a` ⊆ `b`. */
export function mysqlMissing(a: string | null, b: string | null): string[] {
  const [inA, inB] = [parseMysqlGtidSet(a), parseMysqlGtidSet(b)];
  const missing: string[] = [];
  for (const [key, intervals] of inA) {
    for (const [from, to] of subtract(intervals, inB.get(key) ?? [])) {
      missing.push(`${key}:${from === to ? from : `${from}-${to}`}`);
    }
  }
  return missing;
}

/** `a` minus `b`, both sorted and merged. */
function subtract(a: Interval[], b: Interval[]): Interval[] {
  const left: Interval[] = [];
  for (const [from, to] of a) {
    let start = from;
    for (const [f, t] of b) {
      if (t < start || f > to) continue;
      if (f > start) left.push([start, f - 1n]);
      start = t + 1n;
      if (start > to) break;
    }
    if (start <= to) left.push([start, to]);
  }
  return left;
}

/** Whether a MySQL GTID set lies between `before` and `after` (before ⊆ set ⊆ after); what breaks it. */
export function mysqlBetween(before: string | null, position: string | null, after: string | null): string[] {
  const lost = mysqlMissing(before, position);
  const extra = mysqlMissing(position, after);
  return [
    ...(lost.length ? [`lacks ${lost.join(", ")}, executed before the snapshot`] : []),
    ...(extra.length ? [`holds ${extra.join(", ")}, not executed until after the snapshot`] : []),
  ];
}
