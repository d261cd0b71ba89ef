import type { CompetitorName, CompetitorRestore } from "./competitors";
import type { Machine } from "./machine";
import type { HashRates, RestoreRun } from "./scaling";
import type { CommandRun } from "./measure";
import { median, quantile, type StallMeasurement } from "./stall";

/** What `bench/results.json` holds: one run, every figure with the command that produced it. */
export interface BenchResults {
  /** ISO time the run started. */
  startedAt: string;
  finishedAt: string;
  machine: Machine;
  size: SizeName;
  dataset: DatasetFacts;
  /** The write load on the primary during every backup. */
  load: { tool: string; rate: number; threads: number };
  /** Limit measurements, taken before and after our backups. */
  limit: { tag: string; rawRead: Measured; tarZstd: Measured & { outputBytes?: number } }[];
  /**
   * Windows as long as our median backup with no backup running, under the same write load: the longest
   * applier gap a window of that length shows anyway (the noise floor of the stall over a whole backup).
   * Absent in runs from before it was measured.
   */
  control?: { windowSeconds: number; stalls: StallMeasurement[] };
  ours: {
    backups: OurBackup[];
    verify?: OurVerify;
    /** Plain `zstd -d | tar -x` of our last local archive (its chunks in order), for the extract share. */
    plainExtract?: Measured;
    /** `restore` of the last backup from S3 with one chunk at a time, then every core (issue 16). */
    restores?: RestoreRun[];
    /** One core's SHA-256 and CRC32 rates (what the S3 part checksums cost before and now). */
    hashRates?: HashRates;
  };
  competitors: CompetitorResult[];
  targets: TargetVerdict[];
  /** Anything that did not go as planned, in words (a step that failed and was skipped). */
  notes: string[];
}

/** The dataset sizes `--size` offers. */
export type SizeName = "tiny" | "small" | "2g" | "8g";

/** The lab dataset. */
export interface DatasetFacts {
  tables: number;
  tableSize: number;
  /** Exact rows of the sbtest tables (COUNT(*) before the load started). */
  rows: number;
  /** Apparent size of the replica's datadir after the binary logs were purged. */
  datadirBytes: number;
}

/** A measured command without its output. */
export interface Measured {
  command: string;
  wallSeconds: number;
  cpuUserSeconds: number;
  cpuSysSeconds: number;
  peakRssBytes: number;
  /** Bytes processed (the data read), where it applies. */
  bytes?: number;
}

/** Drops a run's output, keeping what results.json needs. */
export function measured(run: CommandRun, bytes?: number): Measured {
  return {
    command: run.command,
    wallSeconds: run.wallSeconds,
    cpuUserSeconds: run.cpuUserSeconds,
    cpuSysSeconds: run.cpuSysSeconds,
    peakRssBytes: run.peakRssBytes,
    ...(bytes === undefined ? {} : { bytes }),
  };
}

/** One of our backups. */
export interface OurBackup extends Measured {
  /** First lock statement → unlock (`lockMs` of its result). */
  lockMs?: number;
  /**
   * The statement that holds commits (BLOCK_COMMIT, FTWRL) → unlock (`holdMs` of its result): how long the
   * replica's commits waited. Runs before it was recorded read it from `result`.
   */
  holdMs?: number;
  archiveSeconds?: number;
  uploadSeconds?: number;
  archiveBytes?: number;
  rawBytes?: number;
  /** CPU the replica's mysqld used while the backup ran. */
  serverCpuSeconds: number;
  /** The replica's Seconds_Behind_Master when the backup started and ended. */
  replicaLagSeconds: ReplicaLag;
  stall: StallMeasurement;
  /**
   * The longest applier gap placed against the backup's own log: ms from its "locking" line to the gap's
   * start, and from its "unlocked" line to the gap's end (positive: the applier resumed after the unlock).
   */
  gapVsLock?: { gapStartAfterLockingMs: number; gapEndAfterUnlockedMs: number };
  /** The stall measured over the lock window alone (from the backup's "locking" to "unlocked" log lines). */
  lockStall?: StallMeasurement;
  /** The CLI's whole `--json` result, as printed. */
  result: Record<string, unknown>;
}

/** Seconds_Behind_Master before and after a backup (null while the SQL thread is not running). */
export interface ReplicaLag {
  before: number | null;
  after: number | null;
}

/** Our verification of the last backup. */
export interface OurVerify extends Measured {
  verdict?: string;
  downloadExtractSeconds?: number;
  recoverySeconds?: number;
  checksSeconds?: number;
  restoreSeconds?: number;
  /** Download + extract + recovery: from the object in S3 to a queryable server. */
  toQueryableSeconds?: number;
  result: Record<string, unknown>;
}

/** A competitor's backup and restore. */
export interface CompetitorResult {
  name: CompetitorName;
  backup?: Measured & {
    artifactBytes: number;
    serverCpuSeconds: number;
    replicaLagSeconds: ReplicaLag;
    stall: StallMeasurement;
  };
  restore?: Omit<CompetitorRestore, "steps"> & {
    steps: { step: string; command: string; wallSeconds: number }[];
  };
  /** Why a part is missing, when it failed. */
  error?: string;
}

/** A target of issue 7 / issue 2 and how this run did against it. */
export interface TargetVerdict {
  target: string;
  /** The threshold, in `unit`. */
  limit: number;
  measured?: number;
  unit: string;
  met?: boolean;
  /** How the figure was computed and, when missed, by how much. */
  detail: string;
}

/** median, p99 (nearest rank) and max of a series. */
export interface Spread {
  n: number;
  median: number;
  p99: number;
  max: number;
}

/** median / p99 / max of the defined values. */
export function spread(values: (number | undefined)[]): Spread | undefined {
  const defined = values.filter((v): v is number => v !== undefined);
  if (defined.length === 0) return undefined;
  return {
    n: defined.length,
    median: median(defined),
    p99: quantile(defined, 0.99),
    max: Math.max(...defined),
  };
}

/** How long a backup held the replica's commits: its `holdMs`, else its result's, else its whole lock window. */
export function commitsHeldMs(backup: OurBackup): number | undefined {
  if (backup.holdMs !== undefined) return backup.holdMs;
  const fromResult = backup.result.holdMs;
  return typeof fromResult === "number" ? fromResult : backup.lockMs;
}
