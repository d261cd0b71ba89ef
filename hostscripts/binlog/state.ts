import { mkdir, readFile, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import type { BinlogEpochRecord, BinlogSegmentEntry, BinlogServer } from "../../contracts";
import { writeDurably } from "../common/durable";
import { PipelineError, messageOf } from "../common/errors";

/**
 * The archiver's memory across restarts, on local disk (`binlog.stateDir`), because the archiver may only
 * create objects in S3, never read them back:
 *
 * - `state.json`: where the chain stands: the epoch, the last segment cut, the GTID state after it and the
 *   byte of the binlog it ends at. Rewritten atomically (temp file, fsync, rename) when a segment is cut: that
 *   rename is the moment a segment exists.
 * - `spool/<epoch>/`: what is cut but not yet in S3: `epoch.json`, `<sequence>.binlog` (the segment's bytes)
 *   and `<sequence>.ledger.json` (its ledger entry without `archivedAt`). They are written before the state
 *   names them and removed once S3 and the queue have them. A segment's bytes are fixed before its first
 *   upload attempt, so a retry after `kill -9` sends the same bytes under the same key; S3's "already exists"
 *   (If-None-Match) then means an earlier attempt got through.
 *
 * On start, spool files the state does not name (a cut interrupted before its rename) and `*.partial` files
 * are deleted: the binlog still holds their bytes and they are read again.
 */

export const STATE_FORMAT_VERSION = 1;

/** Where the chain stands. */
export interface ArchiverState {
  formatVersion: typeof STATE_FORMAT_VERSION;
  cluster: string;
  host: string;
  server: BinlogServer;
  epoch: string;
  epochStartedAt: string;
  /** Commit time of the first transaction archived in this epoch (the start of the archived window). */
  epochFirstCommitAt: string | null;
  /** The last segment cut (0: none yet in this epoch). */
  sequence: number;
  /** Its ledger key, which the next segment links to. */
  previousLedgerKey: string | null;
  /** GTID position (MariaDB) or set (MySQL) after the last segment cut. */
  gtid: string;
  /** Where reading goes on: byte `offset` of binlog `file` (whose header has `identity`). */
  tail: { file: string; identity: string; offset: number; endsFile: boolean };
  /** Commit time of the last transaction cut. */
  lastCommitAt: string | null;
}

/** A ledger entry before its segment is in S3. */
export type LedgerDraft = Omit<BinlogSegmentEntry, "archivedAt"> & { ledgerKey: string };

/** One spooled item, in the order it must reach S3. */
export type SpoolItem =
  | { kind: "epoch"; epoch: string; path: string; record: BinlogEpochRecord }
  | {
      kind: "segment";
      epoch: string;
      sequence: number;
      binlogPath: string;
      ledgerPath: string;
      draft: LedgerDraft;
    };

/** The state directory's files. */
export function statePaths(stateDir: string) {
  return {
    state: join(stateDir, "state.json"),
    lock: join(stateDir, "archiver.lock"),
    spool: join(stateDir, "spool"),
  };
}

const seqName = (sequence: number) => String(sequence).padStart(10, "0");

/** Spool file names of a segment. */
export function spoolFiles(stateDir: string, epoch: string, sequence: number) {
  const dir = join(statePaths(stateDir).spool, epoch);
  return {
    dir,
    partial: join(dir, `${seqName(sequence)}.binlog.partial`),
    binlog: join(dir, `${seqName(sequence)}.binlog`),
    ledger: join(dir, `${seqName(sequence)}.ledger.json`),
    epoch: join(dir, "epoch.json"),
  };
}

/** The saved state, or null when there is none (a first run). A state that cannot be read stops the archiver. */
export async function loadState(stateDir: string): Promise<ArchiverState | null> {
  const path = statePaths(stateDir).state;
  const text = await readFile(path, "utf8").catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") return null;
    throw error;
  });
  if (text === null) return null;
  try {
    const state = JSON.parse(text) as ArchiverState;
    if (state.formatVersion !== STATE_FORMAT_VERSION || typeof state.tail?.offset !== "number")
      throw new Error(`unknown format (formatVersion ${String(state.formatVersion)})`);
    return state;
  } catch (error) {
    throw new PipelineError(
      "BinlogFailed",
      `the archiver's state ${path} cannot be read: ${messageOf(error)}`,
      `move it aside to start a new chain (epoch) from the server's binlogs; the segments of the old chain stay valid`,
      { cause: error },
    );
  }
}

/** Saves the state (the commit point of a cut). */
export async function saveState(stateDir: string, state: ArchiverState): Promise<void> {
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  await writeDurably(statePaths(stateDir).state, JSON.stringify(state, null, 2) + "\n");
}

/**
 * The spooled items the state names, in upload order (epochs by id, each epoch's record before its
 * segments, segments by sequence); deletes what it does not name.
 */
export async function readSpool(stateDir: string, state: ArchiverState | null): Promise<SpoolItem[]> {
  const root = statePaths(stateDir).spool;
  const epochs = (await readdir(root).catch(() => [] as string[])).sort();
  const items: SpoolItem[] = [];
  for (const epoch of epochs) {
    const dir = join(root, epoch);
    // Epochs older than the state's are complete; in the state's epoch only what it names exists.
    const newest =
      state !== null && epoch === state.epoch ? state.sequence : epoch < (state?.epoch ?? "") ? Infinity : -1;
    // The epoch's record goes up before its segments.
    const names = (await readdir(dir)).sort((a, b) =>
      a === "epoch.json" ? -1 : b === "epoch.json" ? 1 : a.localeCompare(b),
    );
    for (const name of names) {
      const path = join(dir, name);
      const segment = /^(\d{10})\.binlog$/.exec(name);
      if (name === "epoch.json" && newest >= 0) {
        items.push({ kind: "epoch", epoch, path, record: JSON.parse(await readFile(path, "utf8")) });
      } else if (segment !== null && Number(segment[1]) <= newest) {
        const ledgerPath = join(dir, `${segment[1]}.ledger.json`);
        const draft = JSON.parse(await readFile(ledgerPath, "utf8")) as LedgerDraft;
        items.push({
          kind: "segment",
          epoch,
          sequence: Number(segment[1]),
          binlogPath: path,
          ledgerPath,
          draft,
        });
      } else if (!/^\d{10}\.ledger\.json$/.test(name) || Number(name.slice(0, 10)) > newest) {
        await rm(path, { force: true });
      }
    }
    if (items.every((item) => item.epoch !== epoch)) await rm(dir, { recursive: true, force: true });
  }
  return items;
}

/** Bytes the spool holds (what is cut but not yet uploaded). */
export function spooledBytes(items: SpoolItem[]): number {
  return items.reduce((sum, item) => sum + (item.kind === "segment" ? item.draft.bytes : 0), 0);
}
