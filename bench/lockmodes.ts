import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { LockMode } from "../contracts";
import { EXTRAS_SCHEMA } from "../lab/dataset";
import {
  labAwsClients,
  primaryGtid,
  replicaStatus,
  sql,
  startLoad,
  stopLoad,
  waitForReplicaCatchUp,
  type Lab,
} from "../lab/lab";
import { benchBackupConfig, clearRemote, say, type LabSize } from "./benchlab";
import { backupCommand as competitorCommand, prepareBackup } from "./competitors";
import { describeMachine, loadAverageNow, type Machine } from "./machine";
import { runMeasured } from "./measure";
import { backupCommand, buildCli, numberAt, runPipeline } from "./pipeline";
import type { ReplicaLag, Spread } from "./results";
import { spread } from "./results";
import { stallDuring, type StallMeasurement } from "./stall";
import { BASELINE_MS, lockStall, withStallWatch } from "./watch";

/**
 * `npm run bench -- --lock-modes`: how long each lock mode blocks the replica's applier per backup, side by
 * side in one run, at 200 tx/s and at the lab's maximum rate (sysbench `--rate=0`), next to mariabackup's own
 * BACKUP STAGE window on the same load. The applier is watched from outside (bench/stall.ts): "blocked" is
 * the longest gap between two observed position changes inside the backup's window (its "locking" to
 * "unlocked" log lines; for mariabackup its "BACKUP STAGE BLOCK_COMMIT" to "BACKUP STAGE END" lines, which
 * carry whole seconds only) minus the normal gap before it. For `none` that is measured like the others, not
 * assumed. The modes run interleaved (none, commit, global, none, …) so drift on the shared machine hits all
 * alike. The lab's MyISAM and Aria tables are made InnoDB first, so every mode runs on the same data.
 */

/** The loads measured: a steady rate, and as fast as the primary goes (sysbench `--rate=0`). */
export const LOCK_MODE_RATES = [
  { name: "200 tx/s", rate: 200, threads: 2 },
  { name: "max", rate: 0, threads: 4 },
] as const;

const MODES: LockMode[] = ["none", "commit", "global"];
/** Warm-up under each load before the first backup. */
const WARMUP_MS = 5_000;

/** One of our backups in the suite. */
export interface LockModeBackup {
  mode: LockMode;
  lockMs?: number;
  /** Part of `lockMs` with commits held (BLOCK_COMMIT or FTWRL to the unlock), as the backup reports it. */
  holdMs?: number;
  /** The backup's own timing of each statement and step of its lock window (`lockSteps` of its result). */
  lockSteps?: unknown[];
  snapshotMs?: number;
  wallSeconds: number;
  /** The applier stall inside the backup's window ("locking" → "unlocked"): what the mode costs. */
  window?: StallMeasurement;
  /** The stall over the whole backup (archive and upload compete for CPU and disk afterwards). */
  stall: StallMeasurement;
  replicaLagSeconds: ReplicaLag;
}

/** One mariabackup run on the same load. */
export interface MariabackupRun {
  wallSeconds: number;
  /** Stall inside its BLOCK_COMMIT window as its log places it (whole seconds, widened to cover them). */
  window?: StallMeasurement;
  stall: StallMeasurement;
  replicaLagSeconds: ReplicaLag;
}

/** One load of the suite. */
export interface LockModeLoad {
  name: string;
  /** sysbench `--rate` (0: unlimited) and threads. */
  rate: number;
  threads: number;
  /** Transactions per second the primary logged and the replica applied while the load ran. */
  primaryTxPerSecond: number;
  replicaTxPerSecond: number;
  backups: LockModeBackup[];
  mariabackup: MariabackupRun[];
}

/** `bench/results-lockmodes.json`. */
export interface LockModesResults {
  startedAt: string;
  finishedAt: string;
  /** The command that produced this file. */
  command: string;
  machine: Machine;
  dataset: { tables: number; tableSize: number };
  /** Backups per mode per load. */
  backupsPerMode: number;
  loads: LockModeLoad[];
  notes: string[];
}

/** The suite's options, from `npm run bench -- --lock-modes`. */
export interface LockModesOptions {
  command: string;
  backups: number;
  /** mariabackup runs per load. */
  mariabackups: number;
  size: LabSize;
  resultsPath: string;
}

/** Runs the suite on `lab` (already up, no load) and writes its results file. */
export async function measureLockModes(lab: Lab, opts: LockModesOptions): Promise<LockModesResults> {
  const notes: string[] = [];
  const results: LockModesResults = {
    startedAt: new Date().toISOString(),
    finishedAt: "",
    command: opts.command,
    machine: await describeMachine(),
    dataset: { tables: opts.size.tables, tableSize: opts.size.tableSize },
    backupsPerMode: opts.backups,
    loads: [],
    notes,
  };
  const work = join(lab.dir, "bench-work");
  await mkdir(work, { recursive: true });
  await crashSafeData(lab, notes);
  const { cli, problem } = await buildCli(work);
  if (problem !== undefined) notes.push(problem);
  const commands = new Map<LockMode, string>();
  for (const mode of MODES) {
    const path = await benchBackupConfig(
      lab,
      work,
      [],
      (c) => ({ ...c, lockMode: mode }),
      `backup-${mode}.json`,
    );
    commands.set(mode, backupCommand(cli, path));
  }
  for (const load of LOCK_MODE_RATES) {
    results.loads.push(await measureLoad(lab, load, commands, work, opts));
  }
  results.machine.loadAverageAtEnd = loadAverageNow();
  results.finishedAt = new Date().toISOString();
  await writeFile(opts.resultsPath, `${JSON.stringify(results, null, 2)}\n`);
  return results;
}

/** Makes the lab's non-InnoDB tables InnoDB (on the primary, so the replica applies it), as `none` needs. */
async function crashSafeData(lab: Lab, notes: string[]): Promise<void> {
  for (const table of ["legacy_myisam", "audit_aria"]) {
    await sql(lab, "primary", `ALTER TABLE ${EXTRAS_SCHEMA}.${table} ENGINE=InnoDB`);
  }
  await waitForReplicaCatchUp(lab, 300_000);
  notes.push(
    `${EXTRAS_SCHEMA}.legacy_myisam and audit_aria were made InnoDB first, so all modes ran on the same data`,
  );
}

/** The sequence number of domain 0 of a GTID list (the lab writes only there). */
const seqOf = (list: string | null) => Number(/(?:^|,)0-\d+-(\d+)/.exec(list ?? "")?.[1] ?? 0);

async function measureLoad(
  lab: Lab,
  load: (typeof LOCK_MODE_RATES)[number],
  commands: Map<LockMode, string>,
  work: string,
  opts: LockModesOptions,
): Promise<LockModeLoad> {
  say(
    `lock modes at ${load.name}: ${opts.backups} backups per mode, then ${opts.mariabackups} mariabackup runs`,
  );
  await startLoad(lab, { rate: load.rate, threads: load.threads });
  await sleep(WARMUP_MS);
  const t0 = performance.now();
  const [primary0, replica0] = [
    seqOf(await primaryGtid(lab)),
    seqOf((await replicaStatus(lab)).gtidSlavePos),
  ];
  const result: LockModeLoad = {
    name: load.name,
    rate: load.rate,
    threads: load.threads,
    primaryTxPerSecond: 0,
    replicaTxPerSecond: 0,
    backups: [],
    mariabackup: [],
  };
  const { s3, sqs } = labAwsClients(lab);
  try {
    for (let round = 1; round <= opts.backups; round++) {
      for (const mode of MODES) {
        const backup = await ourBackup(lab, mode, commands.get(mode)!);
        result.backups.push(backup);
        say(
          `${load.name} ${mode} ${round}/${opts.backups}: lock ${backup.lockMs?.toFixed(0) ?? "?"} ms, ` +
            `applier blocked ${backup.window?.stallMs.toFixed(0) ?? "?"} ms (noise ≤ ${backup.window?.baselineMaxGapMs.toFixed(0) ?? "?"})`,
        );
        await clearRemote(lab, s3, sqs);
      }
    }
    for (let i = 1; i <= opts.mariabackups; i++) result.mariabackup.push(await mariabackup(lab, work));
  } finally {
    s3.destroy();
    sqs.destroy();
  }
  const seconds = (performance.now() - t0) / 1000;
  result.primaryTxPerSecond = (seqOf(await primaryGtid(lab)) - primary0) / seconds;
  result.replicaTxPerSecond = (seqOf((await replicaStatus(lab)).gtidSlavePos) - replica0) / seconds;
  await stopLoad(lab);
  return result;
}

async function ourBackup(lab: Lab, mode: LockMode, command: string): Promise<LockModeBackup> {
  const watched = await withStallWatch(lab, () => runPipeline(`${mode} backup`, command));
  const { run, result } = watched.outcome;
  return {
    mode,
    lockMs: numberAt(result, "lockMs"),
    holdMs: numberAt(result, "holdMs"),
    lockSteps: Array.isArray(result.lockSteps) ? result.lockSteps : undefined,
    snapshotMs: numberAt(result, "snapshotMs"),
    wallSeconds: run.wallSeconds,
    window: lockStall(watched.trace, run.stderr),
    stall: watched.stall,
    replicaLagSeconds: watched.replicaLagSeconds,
  };
}

/** mariabackup as the main bench runs it (streamed, zstd), watched the same way. */
async function mariabackup(lab: Lab, work: string): Promise<MariabackupRun> {
  await prepareBackup("mariabackup", work);
  const command = competitorCommand("mariabackup", { replicaSocket: lab.replica.socket, work });
  const watched = await withStallWatch(lab, () => runMeasured(command));
  if (watched.outcome.exitCode !== 0) {
    throw new Error(
      `bench: mariabackup failed (exit ${watched.outcome.exitCode}): ${watched.outcome.stderrTail}`,
    );
  }
  const log = await readFile(join(work, "mariabackup.log"), "utf8");
  const window = blockCommitWindow(log);
  const run: MariabackupRun = {
    wallSeconds: watched.outcome.wallSeconds,
    stall: watched.stall,
    replicaLagSeconds: watched.replicaLagSeconds,
    ...(window
      ? {
          window: stallDuring(
            watched.trace.changes,
            window.from - performance.timeOrigin,
            window.to - performance.timeOrigin,
            BASELINE_MS,
          ),
        }
      : {}),
  };
  say(
    `mariabackup: BLOCK_COMMIT window stall ${run.window?.stallMs.toFixed(0) ?? "?"} ms, whole run ${run.stall.stallMs.toFixed(0)} ms`,
  );
  return run;
}

/**
 * Epoch ms around mariabackup's BLOCK_COMMIT, from its log ("[00] 2026-11-30 16:57:35 Starting BACKUP STAGE
 * BLOCK_COMMIT" … "Starting BACKUP STAGE END", local time, whole seconds): from the start of the first
 * second to the end of the last, so the window covers the lock whatever the fractions.
 */
export function blockCommitWindow(log: string): { from: number; to: number } | undefined {
  const at = (pattern: RegExp) => {
    const match = new RegExp(`\\] (\\d{4}-\\d\\d-\\d\\d) (\\d\\d:\\d\\d:\\d\\d) ${pattern.source}`).exec(log);
    return match ? new Date(`${match[1]}T${match[2]}`).getTime() : undefined;
  };
  const from = at(/Starting BACKUP STAGE BLOCK_COMMIT/);
  const to = at(/Starting BACKUP STAGE END/);
  return from === undefined || to === undefined ? undefined : { from, to: to + 1000 };
}

/** The figures of one mode on one load, for the report. */
export interface ModeSummary {
  /** Applier blocked per backup (stall inside the window), ms. */
  blocked?: Spread;
  /** Noise floor of the method: the longest gap before each backup, ms. */
  noise?: Spread;
  lock?: Spread;
  /** Commits held (`holdMs`). */
  hold?: Spread;
  snapshot?: Spread;
  /** Stall over the whole backup, ms. */
  whole?: Spread;
}

/** median / p99 / max of each figure of `mode` (or of mariabackup) on one load. */
export function summarize(load: LockModeLoad, mode: LockMode | "mariabackup"): ModeSummary {
  if (mode === "mariabackup") {
    return {
      blocked: spread(load.mariabackup.map((m) => m.window?.stallMs)),
      noise: spread(load.mariabackup.map((m) => m.window?.baselineMaxGapMs)),
      whole: spread(load.mariabackup.map((m) => m.stall.stallMs)),
    };
  }
  const backups = load.backups.filter((b) => b.mode === mode);
  return {
    blocked: spread(backups.map((b) => b.window?.stallMs)),
    noise: spread(backups.map((b) => b.window?.baselineMaxGapMs)),
    lock: spread(backups.map((b) => b.lockMs)),
    hold: spread(backups.map((b) => b.holdMs)),
    snapshot: spread(backups.map((b) => b.snapshotMs)),
    whole: spread(backups.map((b) => b.stall.stallMs)),
  };
}
