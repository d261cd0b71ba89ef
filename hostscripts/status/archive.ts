import {
  EPOCH_PATTERN,
  binlogArchivePrefix,
  epochPrefix,
  parseBinlogKey,
  parseEpochRecord,
  parseSegmentEntry,
  type BinlogEpochRecord,
  type BinlogSegmentEntry,
} from "../../contracts";
import type { BackupListing, Read } from "../common/listing";

/**
 * A host's binlog archive as `status` reads it, at a cost that does not grow with the archive: at RPO 10 s a
 * host writes ~8,640 segments (17,280 keys) a day, and listing 400 days of them would take ~7,000 requests.
 * The key layout (contracts/binlog.ts) makes the newest segment findable without that: below an epoch,
 * keys begin with the 10-digit sequence, so they list in sequence order, and `StartAfter=<sequence>` lists
 * from any sequence on. "Is there a segment at or after N?" is one request, and its answer only turns once
 * (sequences only grow; lifecycle expiry removes old ones): a galloping search (N doubles from the first
 * page's end until a probe comes back empty) then a bisection down to one page finds the newest segment in
 * about 2·log2(segments / 500) requests — ~14 for 50,000 segments, ~24 for 3.5 million. Nothing is written
 * for it: the archiver's create-only role (issue 12) could not keep a "head" object current anyway.
 *
 * Per epoch, three objects are read: its record (reason, the GTIDs a gap lost), its first and its newest
 * complete segment's ledger entries (one more, back along `previousLedgerKey`, when the newest holds only a
 * rotation). The archiver proved every segment between them continuous as it wrote them (a break begins a
 * new epoch), so status treats an epoch as one link of the chain; `restore list` reads every entry.
 */

/** One key page: what S3 returns at most per request. */
const PAGE = 1000;
/** Epochs read per host, newest first; older ones are counted, not read. */
const MAX_EPOCHS = 20;
/** How far back along `previousLedgerKey` the newest commit is looked for. */
const MAX_ROTATION_ONLY = 3;

/** One chain (epoch) of a host, as status needs it. */
export interface EpochScan {
  epoch: string;
  /** Its `epoch.json`; null when missing. */
  record: Read<BinlogEpochRecord> | null;
  /** The oldest complete segment still in S3 (lifecycle expires the oldest). */
  first: Read<BinlogSegmentEntry> | null;
  /** The newest complete segment (its ledger entry is written last). */
  newest: Read<BinlogSegmentEntry> | null;
  /** The commit time of the epoch's newest archived transaction (the newest entry's, or one before it). */
  newestCommitAt: string | null;
}

/** A host's archive: its epochs, oldest first. */
export interface ArchiveScan {
  host: string;
  /** `s3://bucket/<prefix>/<cluster>/binlogs/<host>/`, for messages. */
  url: string;
  epochs: EpochScan[];
  /** Epochs older than the MAX_EPOCHS newest, not read. */
  epochsNotRead: number;
}

const epochName = new RegExp(EPOCH_PATTERN);

/** The hosts with a binlog archive in the cluster. */
export function archiveHosts(reader: BackupListing, cluster: string): Promise<string[]> {
  return reader.children(binlogArchivePrefix(reader.prefix, cluster));
}

/** Reads one host's archive; see the module comment for what it costs. */
export async function scanArchive(
  reader: BackupListing,
  cluster: string,
  host: string,
): Promise<ArchiveScan> {
  const root = `${binlogArchivePrefix(reader.prefix, cluster)}${host}/`;
  const all = await reader.children(root, epochName);
  const wanted = all.slice(-MAX_EPOCHS);
  const epochs: EpochScan[] = [];
  for (const epoch of wanted) {
    const prefix = epochPrefix({ prefix: reader.prefix, cluster, host, epoch });
    const record = await reader.read(`${prefix}epoch.json`, parseEpochRecord);
    const { first, newest } = await edgeLedgers(reader, cluster, prefix);
    const firstRead = first === null ? null : await reader.read(first, parseSegmentEntry);
    const newestRead =
      newest === null ? null : newest === first ? firstRead : await reader.read(newest, parseSegmentEntry);
    epochs.push({
      epoch,
      record,
      first: firstRead,
      newest: newestRead,
      newestCommitAt: await newestCommit(reader, newestRead),
    });
  }
  return {
    host,
    url: `s3://${reader.bucket}/${root}`,
    epochs,
    epochsNotRead: all.length - wanted.length,
  };
}

/** The ledger keys of the listed keys, by sequence. */
function ledgersOf(reader: BackupListing, cluster: string, keys: string[]): Map<number, string> {
  const found = new Map<number, string>();
  for (const key of keys) {
    const parsed = parseBinlogKey(reader.prefix, cluster, key);
    if (parsed?.kind === "ledger") found.set(parsed.ref.sequence, key);
  }
  return found;
}

/** The sequences of the segments and ledger entries listed. */
function sequencesOf(reader: BackupListing, cluster: string, keys: string[]): number[] {
  return keys.flatMap((key) => {
    const parsed = parseBinlogKey(reader.prefix, cluster, key);
    return parsed === null || parsed.kind === "epoch" ? [] : [parsed.ref.sequence];
  });
}

const pad = (sequence: number) => String(sequence).padStart(10, "0");

/** The ledger keys of an epoch's oldest and newest complete segments, by the search the module describes. */
async function edgeLedgers(
  reader: BackupListing,
  cluster: string,
  prefix: string,
): Promise<{ first: string | null; newest: string | null }> {
  // The keys of sequence `from` and after (`StartAfter` "0000000042" lists "0000000042-…" on).
  const list = async (from: number | null) => {
    const page = await reader.listPage({
      prefix,
      startAfter: from === null ? undefined : prefix + pad(from),
      maxKeys: PAGE,
    });
    const keys = (page.Contents ?? []).map((o) => o.Key ?? "");
    return { keys, more: page.IsTruncated === true, sequences: sequencesOf(reader, cluster, keys) };
  };
  const head = await list(null);
  const firstLedgers = ledgersOf(reader, cluster, head.keys);
  const first = firstLedgers.get(Math.min(...firstLedgers.keys())) ?? null;
  if (!head.more) return { first, newest: newestOf(firstLedgers) };
  // `low` exists; nothing exists at or after `high`.
  let low = Math.max(1, ...head.sequences);
  let high: number | null = null;
  let step = PAGE / 2;
  let tail: string[] | null = null;
  while (high === null || high - low > PAGE / 4) {
    const probe: number = high === null ? low + step : Math.floor((low + high) / 2);
    const page = await list(probe);
    if (page.sequences.length === 0) high = probe;
    else if (!page.more) {
      tail = page.keys;
      break;
    } else {
      low = Math.max(...page.sequences);
      step *= 2;
    }
  }
  const newest = tail === null ? null : newestOf(ledgersOf(reader, cluster, tail));
  if (newest !== null) return { first, newest };
  // From a few sequences before `low`, in case the newest ledger entries are still being written.
  const last = await list(Math.max(1, low - 8));
  return { first, newest: newestOf(ledgersOf(reader, cluster, last.keys)) };
}

function newestOf(ledgers: Map<number, string>): string | null {
  return ledgers.size === 0 ? null : ledgers.get(Math.max(...ledgers.keys()))!;
}

/** The newest commit time at or before `entry`: a segment of a rotation alone holds none. */
async function newestCommit(
  reader: BackupListing,
  entry: Read<BinlogSegmentEntry> | null,
): Promise<string | null> {
  let read = entry;
  for (let hops = 0; hops <= MAX_ROTATION_ONLY && read !== null && "value" in read; hops++) {
    const { lastCommitAt } = read.value.transactions;
    if (lastCommitAt !== null) return lastCommitAt;
    const previous = read.value.previousLedgerKey;
    if (previous === null) return null;
    read = await reader.read(previous, parseSegmentEntry);
  }
  return null;
}
