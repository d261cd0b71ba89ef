import { mkdir, readFile, rm, statfs, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Connection } from "mysql2/promise";
import { labAwsClients, type Lab } from "../lab/lab";
import { rootQuery, rootSession } from "../lab/mariadb";
import { sh } from "../lab/processes";
import { PRODUCT_CHUNK_MIB, benchBackupConfig, clearRemote, freshLab, say } from "./benchlab";
import { treeBytes } from "./limit";
import { describeMachine, loadAverageNow, type Machine } from "./machine";
import { runMeasured } from "./measure";
import { backupCommand, buildCli, numberAt, runPipeline, stringAt, verifyCommand } from "./pipeline";
import { measured, type Measured } from "./results";

/**
 * `npm run bench -- --large --gb 20`: a run at a real size, end to end — backup, the full verification
 * (restore into a scratch server, every check, per-table checksums) and `restore` — at `baseGb` and then at
 * `gb` on the same lab in one invocation, for the scaling ratio (issue 16, item 3).
 *
 * The data is made on the replica, quickly: a small sysbench dataset is prepared on the primary (and
 * replicates), then its tables are copied on the replica alone (`sql_log_bin = 0`, a schema of its own)
 * as transportable tablespaces — FLUSH … FOR EXPORT, a file copy, IMPORT TABLESPACE — until the replica's
 * datadir holds the size asked for. Each copy is real sysbench rows (they compress as the base does, 2.7:1,
 * not as zeros); copies repeat the same rows, which zstd's window (≤ 8 MiB at level 1) cannot see across
 * 250 MB tables. Making 20 GB this way takes minutes; `sysbench prepare` of 0.5 GB took about one here, and the
 * replica then applies it again. No write load runs: the large run measures size, the main suite measures load.
 *
 * Objects go to the lab's emulator (fauxqs, in memory): format 2 keeps each object at most a chunk
 * (`compression.chunkMiB`, the product's 1024 MiB here), and the emulator's peak memory is recorded.
 */

/** What the large suite is asked to do. */
export interface LargeOptions {
  dir: string;
  /** The large size: GB (10⁹ bytes) of the replica's datadir. */
  gb: number;
  /** The small size measured first in the same run, for the scaling ratio. */
  baseGb: number;
  resultsPath: string;
  /** The command line, as BENCHMARKS.md shows it. */
  command: string;
}

/** One size of the run: how the data was made and the three measured steps. */
export interface LargeSize {
  targetGb: number;
  /** Apparent bytes of the replica's datadir when the backup started. */
  datadirBytes: number;
  /** Tables copied on the replica so far, and the seconds making them took (this size's share). */
  copiedTables: number;
  generateSeconds: number;
  backup?: Measured & {
    backupId?: string;
    archiveBytes?: number;
    rawBytes?: number;
    archiveSeconds?: number;
  };
  verify?: Measured & {
    verdict?: string;
    timings?: Record<string, number>;
    /** Tables the verification restored, the copies among them, rows counted, and content checksums taken. */
    tables?: number;
    copies?: number;
    rows?: number;
    checksums?: number;
  };
  restore?: Measured;
  /** The emulator's resident memory after the size's restore, and its peak since it started. */
  emulatorRssBytes?: number;
  emulatorPeakRssBytes?: number;
  /** Free bytes on the lab's filesystem before the backup and at the end of the size. */
  diskFreeBefore?: number;
  diskFreeAfter?: number;
}

/** results-large.json. */
export interface LargeResults {
  startedAt: string;
  finishedAt?: string;
  command: string;
  machine: Machine;
  base: { tables: number; tableSize: number };
  chunkMiB: number;
  sizes: LargeSize[];
  notes: string[];
}

/** The sysbench dataset the copies are made of: 2 × 1M rows, ≈ 250 MB each; 2 × 50k below 1 GB. */
function baseDataset(gb: number): { tables: number; tableSize: number } {
  return gb >= 1 ? { tables: 2, tableSize: 1_000_000 } : { tables: 2, tableSize: 50_000 };
}

/** The schema of the replica-only copies. */
const COPY_SCHEMA = "bench_large";
/** Tables made per FLUSH … FOR EXPORT (the source tables are read-locked while their files are copied). */
const COPIES_PER_BATCH = 8;

/** The whole suite; writes `resultsPath` after every step, so a run stopped midway keeps what it measured. */
export async function runLargeSuite(opts: LargeOptions): Promise<LargeResults> {
  const base = baseDataset(opts.baseGb);
  // The replica's volume holds the largest size plus its snapshot's metadata; the image is sparse.
  const imageSizeGiB = Math.ceil(opts.gb * 1.4) + 8;
  await requireDiskSpace(opts.dir, opts.gb);
  say(`large: lab in ${opts.dir} (${base.tables} × ${base.tableSize} rows, ${imageSizeGiB} GiB volume)`);
  const lab = await freshLab(opts.dir, { ...base, imageSizeGiB });
  const work = join(lab.dir, "bench-work");
  await mkdir(work, { recursive: true });
  const notes: string[] = [];
  const results: LargeResults = {
    startedAt: new Date().toISOString(),
    command: opts.command,
    machine: await describeMachine(),
    base,
    chunkMiB: PRODUCT_CHUNK_MIB,
    sizes: [],
    notes,
  };
  // keepLocal 0: the staged archive is deleted once uploaded, so the disk holds one copy of the data less.
  const config = await benchBackupConfig(lab, work, notes, (c) => ({
    ...c,
    keepLocal: 0,
    compression: { ...c.compression, chunkMiB: PRODUCT_CHUNK_MIB },
  }));
  const { cli, problem } = await buildCli(work);
  if (problem !== undefined) notes.push(problem);
  const save = () => writeFile(opts.resultsPath, `${JSON.stringify(results, null, 2)}\n`);
  for (const targetGb of [opts.baseGb, opts.gb]) {
    const size = await growTo(lab, targetGb);
    results.sizes.push(size);
    await save();
    await measureSize(lab, cli, config, work, size, save);
    const { s3, sqs } = labAwsClients(lab);
    await clearRemote(lab, s3, sqs).finally(() => (s3.destroy(), sqs.destroy()));
  }
  results.machine.loadAverageAtEnd = loadAverageNow();
  results.finishedAt = new Date().toISOString();
  await save();
  return results;
}

/** Refuses to start when the disk cannot hold the replica, the staging, the verifier's scratch and a restore. */
async function requireDiskSpace(dir: string, gb: number): Promise<void> {
  // Replica + verifier scratch at once (the restore runs after the scratch is gone), the staged archive
  // (≈ 0.4 of the data), and 10 % slack for the lab's logs and btrfs metadata.
  const needed = gb * 1e9 * 2.5;
  const parent = join(dir, "..");
  await mkdir(parent, { recursive: true });
  const fs = await statfs(parent);
  const free = fs.bavail * fs.bsize;
  if (free < needed) {
    throw new Error(
      `bench --large: ${(free / 1e9).toFixed(0)} GB free under ${parent}, a ${gb} GB run needs about ` +
        `${(needed / 1e9).toFixed(0)} GB (replica, staging, verifier scratch); free space or choose a smaller --gb`,
    );
  }
}

async function freeBytes(path: string): Promise<number> {
  const fs = await statfs(path);
  return fs.bavail * fs.bsize;
}

/** Copies the sysbench tables on the replica until its datadir holds `targetGb`. */
async function growTo(lab: Lab, targetGb: number): Promise<LargeSize> {
  const started = performance.now();
  const target = targetGb * 1e9;
  const session = await rootSession(lab.replica.socket);
  try {
    // The copies exist on the replica only: no binlog events, no GTIDs of the replica's own.
    await session.query("SET SESSION sql_log_bin = 0");
    await session.query(`CREATE DATABASE IF NOT EXISTS ${COPY_SCHEMA}`);
    const sources = await sourceTables(lab);
    for (;;) {
      const current = await treeBytes(lab.replica.datadir);
      if (current >= target) break;
      const copied = await copiedTables(lab);
      const perTable = sources.reduce((s, t) => s + t.bytes, 0) / sources.length;
      const count = Math.min(COPIES_PER_BATCH, Math.ceil((target - current) / perTable));
      const batch = Array.from({ length: count }, (_, i) => ({
        source: sources[(copied + i) % sources.length],
        name: `copy_${String(copied + i + 1).padStart(4, "0")}`,
      }));
      await copyBatch(lab, session, batch);
      say(
        `large: ${copied + count} tables copied, datadir ${(current / 1e9).toFixed(1)} GB → ${targetGb} GB`,
      );
    }
  } finally {
    await session.end();
  }
  const datadirBytes = await treeBytes(lab.replica.datadir);
  const generateSeconds = (performance.now() - started) / 1000;
  say(`large: ${(datadirBytes / 1e9).toFixed(2)} GB in the datadir after ${generateSeconds.toFixed(0)} s`);
  return { targetGb, datadirBytes, copiedTables: await copiedTables(lab), generateSeconds };
}

async function sourceTables(lab: Lab): Promise<{ name: string; bytes: number }[]> {
  const rows = await rootQuery(
    lab.replica.socket,
    "SELECT table_name AS t FROM information_schema.tables WHERE table_schema = 'sbtest' ORDER BY table_name",
  );
  const tables = [];
  for (const { t } of rows) {
    const name = String(t);
    const out = await sh`stat -c %s ${join(lab.replica.datadir, "sbtest", `${name}.ibd`)}`;
    tables.push({ name, bytes: Number(out.stdout.trim()) });
  }
  if (tables.length === 0) throw new Error("bench --large: the replica has no sbtest tables to copy");
  return tables;
}

async function copiedTables(lab: Lab): Promise<number> {
  const [row] = await rootQuery(
    lab.replica.socket,
    "SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_schema = ?",
    [COPY_SCHEMA],
  );
  return Number(row?.n ?? 0);
}

/**
 * One batch of transportable-tablespace copies: empty tables made and their tablespaces discarded, the
 * sources' files copied while FLUSH … FOR EXPORT holds them consistent, then each copy imported.
 */
async function copyBatch(
  lab: Lab,
  session: Connection,
  batch: { source: { name: string }; name: string }[],
): Promise<void> {
  const datadir = lab.replica.datadir;
  for (const { source, name } of batch) {
    await session.query(`CREATE TABLE ${COPY_SCHEMA}.${name} LIKE sbtest.${source.name}`);
    await session.query(`ALTER TABLE ${COPY_SCHEMA}.${name} DISCARD TABLESPACE`);
  }
  const sources = [...new Set(batch.map((b) => b.source.name))];
  await session.query(`FLUSH TABLES ${sources.map((s) => `sbtest.${s}`).join(", ")} FOR EXPORT`);
  try {
    for (const { source, name } of batch) {
      for (const ext of ["ibd", "cfg"]) {
        const from = join(datadir, "sbtest", `${source.name}.${ext}`);
        const to = join(datadir, COPY_SCHEMA, `${name}.${ext}`);
        await sh`cp --reflink=auto ${from} ${to} && chown mysql:mysql ${to}`;
      }
    }
  } finally {
    await session.query("UNLOCK TABLES");
  }
  for (const { name } of batch) {
    await session.query(`ALTER TABLE ${COPY_SCHEMA}.${name} IMPORT TABLESPACE`);
    await rm(join(datadir, COPY_SCHEMA, `${name}.cfg`), { force: true });
  }
}

/** Backup, full verification and restore of the lab at its current size; each step saved as it ends. */
async function measureSize(
  lab: Lab,
  cli: string,
  config: string,
  work: string,
  size: LargeSize,
  save: () => Promise<void>,
): Promise<void> {
  const gb = size.targetGb;
  size.diskFreeBefore = await freeBytes(lab.dir);
  say(`large ${gb} GB: backup`);
  const backup = await runPipeline("backup", backupCommand(cli, config));
  const backupId = stringAt(backup.result, "backupId");
  size.backup = {
    ...measured(backup.run),
    backupId,
    archiveBytes: numberAt(backup.result, "archiveBytes", "archive.bytes"),
    rawBytes: numberAt(backup.result, "rawBytes", "archive.rawBytes"),
    archiveSeconds: numberAt(backup.result, "archiveSeconds", "timings.archiveSeconds"),
  };
  say(`large ${gb} GB: backup ${backupId} in ${backup.run.wallSeconds.toFixed(0)} s; verification`);
  await save();
  const verify = await runPipeline("verification", verifyCommand(cli, lab.verifyConfigPath), {
    excludeFromRss: ["mariadbd", "mysqld"],
  });
  size.verify = {
    ...measured(verify.run),
    verdict: stringAt(verify.result, "verdict"),
    timings: timingsOf(verify.result),
    ...tablesOf(verify.result),
  };
  say(`large ${gb} GB: verdict ${size.verify.verdict} in ${verify.run.wallSeconds.toFixed(0)} s; restore`);
  await save();
  if (backupId === undefined) throw new Error("bench --large: the backup's result names no backupId");
  size.restore = await restoreOnce(lab, cli, work, backupId);
  say(`large ${gb} GB: restored in ${size.restore.wallSeconds.toFixed(0)} s`);
  const emulator = await processMemory(lab.emulator.pid);
  size.emulatorRssBytes = emulator.rss;
  size.emulatorPeakRssBytes = emulator.peak;
  size.diskFreeAfter = await freeBytes(lab.dir);
  await save();
}

/** `mysql-backup restore` of one backup into the bench's work directory, removed afterwards. */
async function restoreOnce(lab: Lab, cli: string, work: string, backupId: string): Promise<Measured> {
  const target = join(work, "restore");
  await rm(target, { recursive: true, force: true });
  try {
    const run = await runMeasured(
      `node ${cli} restore --config ${lab.restoreConfigPath} --target ${target} --backup ${backupId} --json`,
    );
    if (run.exitCode !== 0) {
      throw new Error(
        `bench --large: restore of ${backupId} failed (exit ${run.exitCode}):\n${run.stderrTail}`,
      );
    }
    return measured(run, await treeBytes(target));
  } finally {
    await rm(target, { recursive: true, force: true });
  }
}

/** The verification result's timings in seconds (`timings`, else the report's). */
function timingsOf(result: Record<string, unknown>): Record<string, number> {
  const report = result.report as Record<string, unknown> | undefined;
  const timings = (result.timings ?? report?.timings) as Record<string, unknown> | undefined;
  return Object.fromEntries(
    Object.entries(timings ?? {}).filter((e): e is [string, number] => typeof e[1] === "number"),
  );
}

/** What the verification restored and checked, from its result's tables. */
function tablesOf(result: Record<string, unknown>): {
  tables: number;
  copies: number;
  rows: number;
  checksums: number;
} {
  const tables = Array.isArray(result.tables)
    ? (result.tables as { schema?: string; rows?: number | null; checksum?: unknown }[])
    : [];
  return {
    tables: tables.length,
    copies: tables.filter((t) => t.schema === COPY_SCHEMA).length,
    rows: tables.reduce((sum, t) => sum + (t.rows ?? 0), 0),
    checksums: tables.filter((t) => t.checksum !== null && t.checksum !== undefined).length,
  };
}

/** VmRSS and VmHWM (peak) of a process, in bytes. */
async function processMemory(pid: number): Promise<{ rss?: number; peak?: number }> {
  const status = await readFile(`/proc/${pid}/status`, "utf8").catch(() => "");
  const kb = (key: string) => {
    const match = new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(status);
    return match ? Number(match[1]) * 1024 : undefined;
  };
  return { rss: kb("VmRSS"), peak: kb("VmHWM") };
}
