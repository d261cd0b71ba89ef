import { spawn } from "node:child_process";
import { mkdir, readdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { BINLOG_NODE_OPTIONS } from "../contracts/units";
import { memoryLogger } from "../hostscripts/common/log";
import { parseState } from "../hostscripts/common/gtid-state";
import { listArchive, readArchive } from "../hostscripts/restore/archive";
import { planChain } from "../hostscripts/common/pitr-chain";
import { downloadSegments } from "../hostscripts/restore/segments";
import { selectTransactions } from "../hostscripts/restore/select";
import { writeRelayLogs } from "../hostscripts/restore/replay";
import { LAB_RPO_SECONDS } from "../lab/configs";
import {
  labAwsClients,
  labUp,
  replicaStatus,
  startLoad,
  stopLoad,
  waitForReplicaCatchUp,
  type Lab,
} from "../lab/lab";
import { archivedSegments as ledger } from "../lab/demo-pitr";
import { chownToMysql, rootQuery } from "../lab/mariadb";
import { isAlive, terminate, waitUntil } from "../lab/processes";
import { describeMachine, loadAverageNow, type Machine } from "./machine";
import { processCpuSeconds, runMeasured, sampleTreeRss } from "./measure";
import { buildCli, runPipeline, stringAt } from "./pipeline";
import { quantile } from "./stall";

/**
 * `npm run bench -- --pitr`: point-in-time recovery measured on the lab. The archiver runs as on a host (the
 * bundled CLI, the lab replica's config: RPO 10 s); sysbench writes at 200 tx/s, then as fast as the lab
 * goes. Per phase: the RPO lag of every segment (its first transaction's commit on the primary to its
 * segment's ledger entry in S3: the worst wait of any transaction in it, in whole seconds of the binlog's
 * timestamps), the replica's own delay beside it, and the archiver's CPU and peak RSS. Then the replay:
 * `restore --until latest` from a snapshot taken before the phases (parallel applier on relay logs), next
 * to plain `mariadb-binlog | mariadb` of exactly the same transactions into a copy of the same snapshot.
 */

/** One load phase. */
export interface PitrLagPhase {
  name: string;
  /** sysbench's target rate, or 0 for unlimited. */
  targetRate: number;
  seconds: number;
  /** Transactions the primary committed in the phase, and per second. */
  transactions: number;
  primaryTps: number;
  segments: number;
  /** Seconds from a segment's first commit on the primary to its ledger entry in S3: p50, p99, max. */
  lag: { p50: number; p99: number; max: number };
  /**
   * The archiver's own share: seconds from the moment a segment's first transaction was committed in the
   * replica's binlog (SHOW MASTER STATUS sampled every 200 ms; the sample before it passed, so an upper bound)
   * to its ledger entry in S3. What the archiver adds on top of replication.
   */
  archiverLag: { p50: number; p99: number; max: number };
  /**
   * The replica's Seconds_Behind_Master sampled every second from the phase's start until it caught up: how
   * much of the lag is replication's.
   */
  replicaDelay: { p50: number; p99: number; max: number };
  /** The archiver's CPU over the phase (share of one core) and its peak RSS. */
  archiverCpuPercent: number;
  archiverPeakRssMiB: number;
}

/** The replay comparison. */
export interface PitrReplay {
  transactions: number;
  segments: number;
  ours: { command: string; seconds: number; tps: number };
  plain: { command: string; seconds: number; tps: number };
}

/** What `--pitr` writes to `bench/results-pitr.json`. */
export interface PitrBenchResults {
  startedAt: string;
  finishedAt: string;
  machine: Machine;
  dataset: { tables: number; tableSize: number };
  rpoSeconds: number;
  phases: PitrLagPhase[];
  replay?: PitrReplay;
  notes: string[];
}

/** How the PITR suite runs. */
export interface PitrBenchOptions {
  dir: string;
  size: { tables: number; tableSize: number; imageSizeGiB: number };
  /** Seconds of each load phase. */
  phaseSeconds: number;
  say: (message: string) => void;
}

const summary = (values: number[]) => ({
  p50: round(quantile(values, 0.5)),
  p99: round(quantile(values, 0.99)),
  max: round(values.length === 0 ? 0 : Math.max(...values)),
});
const round = (n: number) => Math.round(n * 10) / 10;

/** The whole suite; the caller removes the lab. */
export async function runPitrBench(opts: PitrBenchOptions): Promise<PitrBenchResults> {
  const results: PitrBenchResults = {
    startedAt: new Date().toISOString(),
    finishedAt: "",
    machine: await describeMachine(),
    dataset: { tables: opts.size.tables, tableSize: opts.size.tableSize },
    rpoSeconds: LAB_RPO_SECONDS,
    phases: [],
    notes: [],
  };
  opts.say(`bringing the lab up in ${opts.dir}`);
  const lab = await labUp({ dir: opts.dir, ...opts.size });
  const work = join(lab.dir, "bench-pitr");
  await mkdir(work, { recursive: true });
  const { cli, problem } = await buildCli(work);
  if (problem !== undefined) results.notes.push(problem);
  opts.say("snapshot before the load phases");
  const snapshot = stringAt(
    (await runPipeline("backup", `node ${cli} backup --config ${lab.backupConfigPath} --json`)).result,
    "backupId",
  )!;
  const archiver = startArchiver(cli, lab.backupConfigPath, lab.dir);
  try {
    await waitForArchived(lab, await replicaGtid(lab));
    for (const [name, rate, threads] of [
      ["200 tx/s", 200, 2],
      ["as fast as the lab writes", 0, 4],
    ] as const) {
      opts.say(`phase ${name}: ${opts.phaseSeconds} s`);
      results.phases.push(await lagPhase(lab, archiver.pid, name, rate, threads, opts.phaseSeconds));
    }
  } finally {
    await terminate([archiver.pid], 60_000);
  }
  opts.say("replay: ours next to mariadb-binlog | mariadb");
  results.replay = await replayComparison(lab, cli, snapshot, work).catch((error: Error) => {
    results.notes.push(`the replay comparison failed: ${error.message}`);
    return undefined;
  });
  results.machine.loadAverageAtEnd = loadAverageNow();
  results.finishedAt = new Date().toISOString();
  return results;
}

function startArchiver(cli: string, config: string, labDir: string): { pid: number } {
  // With the Node options its unit sets, so the RSS measured is the host's.
  const child = spawn(process.execPath, [cli, "binlog", "--config", config], {
    cwd: labDir,
    stdio: "ignore",
    env: { ...process.env, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ""} ${BINLOG_NODE_OPTIONS}`.trim() },
  });
  if (child.pid === undefined) throw new Error("bench: the archiver did not start");
  return { pid: child.pid };
}

async function replicaGtid(lab: Lab): Promise<string> {
  return (await replicaStatus(lab)).gtidSlavePos;
}

/** Waits until the archive holds `gtid` (a MariaDB position). */
async function waitForArchived(lab: Lab, gtid: string): Promise<void> {
  const target = parseState("mariadb", gtid);
  const done = await waitUntil(
    async () => (await ledger(lab)).some((e) => parseState("mariadb", e.gtid.after).covers(target)),
    600_000,
    2000,
  );
  if (!done) throw new Error(`bench: the archive did not reach ${gtid} within 10 minutes`);
}

async function lagPhase(
  lab: Lab,
  archiverPid: number,
  name: string,
  rate: number,
  threads: number,
  seconds: number,
): Promise<PitrLagPhase> {
  const primaryBefore = Number((await replicaStatus(lab)).gtidSlavePos.split("-")[2] ?? 0);
  const rss = sampleTreeRss(archiverPid, 200);
  const positions = samplePositions(lab.replica.socket, 200);
  const cpuBefore = await processCpuSeconds(archiverPid);
  const started = Date.now();
  await startLoad(lab, { rate, threads });
  const delays: number[] = [];
  let caughtUp = false;
  const delaySampler = (async () => {
    while (!caughtUp) {
      delays.push((await replicaStatus(lab)).secondsBehind ?? 0);
      await sleep(1000);
    }
  })();
  let ended: number;
  try {
    await sleep(seconds * 1000);
    await stopLoad(lab);
    ended = Date.now();
    await waitForReplicaCatchUp(lab, 600_000);
  } finally {
    caughtUp = true;
    await delaySampler;
  }
  const cpu = (await processCpuSeconds(archiverPid)) - cpuBefore;
  const catchUpEnded = Date.now();
  const last = await replicaGtid(lab);
  await waitForArchived(lab, last);
  const peak = await rss.stop();
  const visible = await positions.stop();
  if (!(await isAlive(archiverPid))) throw new Error("bench: the archiver died during the phase");
  const segments = (await ledger(lab)).filter((e) => {
    const first = Date.parse(e.transactions.firstCommitAt ?? "");
    return first >= started - 1000 && first <= ended;
  });
  const transactions = Number(last.split("-")[2]) - primaryBefore;
  return {
    name,
    targetRate: rate,
    seconds: round((ended - started) / 1000),
    transactions,
    primaryTps: round(transactions / ((ended - started) / 1000)),
    segments: segments.length,
    lag: summary(
      segments.map((e) => (Date.parse(e.archivedAt) - Date.parse(e.transactions.firstCommitAt!)) / 1000),
    ),
    archiverLag: summary(
      segments.flatMap((e) => {
        const at = visibleSince(visible, e.file.name, e.file.startOffset);
        return at === undefined ? [] : [(Date.parse(e.archivedAt) - at) / 1000];
      }),
    ),
    replicaDelay: summary(delays),
    archiverCpuPercent: round((cpu / ((catchUpEnded - started) / 1000)) * 100),
    archiverPeakRssMiB: round(peak / 1024 / 1024),
  };
}

interface PositionSample {
  at: number;
  file: string;
  position: number;
}

/** Samples the replica's committed binlog end (SHOW MASTER STATUS) every `everyMs` until `stop`. */
function samplePositions(socket: string, everyMs: number): { stop: () => Promise<PositionSample[]> } {
  const samples: PositionSample[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const at = Date.now();
      const [row] = await rootQuery(socket, "SHOW MASTER STATUS").catch(() => []);
      if (row !== undefined) samples.push({ at, file: String(row.File), position: Number(row.Position) });
      await sleep(everyMs);
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return samples;
    },
  };
}

/**
 * When the bytes after `offset` of `file` began to be committed: the last sample that had not passed it yet
 * (an upper bound of the wait that follows). Binlog file names sort in their order.
 */
function visibleSince(samples: PositionSample[], file: string, offset: number): number | undefined {
  const passed = samples.findIndex((s) => s.file > file || (s.file === file && s.position > offset));
  return passed <= 0 ? undefined : samples[passed - 1]!.at;
}

/** Our replay (restore --until latest) next to `mariadb-binlog | mariadb` of the same transactions. */
async function replayComparison(lab: Lab, cli: string, snapshot: string, work: string): Promise<PitrReplay> {
  const ours = join(work, "ours");
  const command = `node ${cli} restore --config ${lab.restoreConfigPath} --target ${ours} --backup ${snapshot} --until latest --json`;
  const restored = (await runPipeline("restore --until", command)).result as {
    pitr: { transactions: number; segments: number; replaySeconds: number; startGtid: string };
  };
  await rm(ours, { recursive: true, force: true });

  const plainDir = join(work, "plain");
  await runPipeline(
    "restore",
    `node ${cli} restore --config ${lab.restoreConfigPath} --target ${plainDir} --backup ${snapshot} --json`,
  );
  const relayDir = join(work, "relay");
  await mkdir(relayDir, { recursive: true });
  const { s3 } = labAwsClients(lab);
  let files: string[];
  try {
    const epochs = await readArchive(
      s3,
      lab.s3.bucket,
      await listArchive(s3, lab.s3.bucket, "backups", "lab"),
    );
    const start = parseState("mariadb", restored.pitr.startGtid);
    const plan = planChain("mariadb", epochs, start, { kind: "latest" });
    const segments = await downloadSegments(
      s3,
      lab.s3.bucket,
      plan.steps.map((s) => s.entry),
      join(work, "segments"),
      memoryLogger(),
    );
    const selection = selectTransactions("mariadb", segments, start, { kind: "end" });
    files = (await writeRelayLogs(relayDir, selection.pieces)).files.map((f) => join(relayDir, f));
  } finally {
    s3.destroy();
  }
  const server = await startPlainServer(lab, join(plainDir, "data"), work);
  try {
    const plain = await runMeasured(`mariadb-binlog ${files.join(" ")} | mariadb --socket=${server.socket}`);
    if (plain.exitCode !== 0) throw new Error(`mariadb-binlog | mariadb failed: ${plain.stderrTail}`);
    return {
      transactions: restored.pitr.transactions,
      segments: restored.pitr.segments,
      ours: {
        command,
        seconds: restored.pitr.replaySeconds,
        tps: round(restored.pitr.transactions / restored.pitr.replaySeconds),
      },
      plain: {
        command: `mariadb-binlog <the same ${files.length} relay logs> | mariadb`,
        seconds: round(plain.wallSeconds),
        tps: round(restored.pitr.transactions / plain.wallSeconds),
      },
    };
  } finally {
    await terminate([server.pid], 60_000);
  }
}

/** The plain replay's server: the same relaxed durability as ours, so only the applier differs. */
async function startPlainServer(
  lab: Lab,
  datadir: string,
  work: string,
): Promise<{ pid: number; socket: string }> {
  const run = join(work, "plain-run");
  await mkdir(run, { recursive: true });
  await chownToMysql(run);
  const socket = join(run, "s.sock");
  const args = [
    "--no-defaults",
    "--user=mysql",
    `--datadir=${datadir}`,
    `--tmpdir=${run}`,
    `--socket=${socket}`,
    `--pid-file=${join(run, "p.pid")}`,
    `--log-error=${join(run, "err.log")}`,
    "--skip-networking",
    "--skip-grant-tables",
    "--skip-slave-start",
    "--server-id=4000000001",
    `--log-bin=${join(datadir, "mysql-bin")}`,
    "--innodb-buffer-pool-size=512M",
    "--innodb-flush-log-at-trx-commit=2",
    "--sync-binlog=0",
  ];
  const child = spawn("mariadbd", args, { cwd: lab.dir, stdio: "ignore" });
  const up = await waitUntil(async () => (await readdir(run)).includes("s.sock"), 120_000, 200);
  if (!up || child.pid === undefined)
    throw new Error(`bench: the plain replay's server did not start (see ${run}/err.log)`);
  await sleep(1000);
  return { pid: child.pid, socket };
}

/** Writes results and the PITR section of BENCHMARKS.md (between its markers). */
export async function writePitrResults(resultsPath: string, results: PitrBenchResults): Promise<void> {
  await writeFile(resultsPath, `${JSON.stringify(results, null, 2)}\n`);
}
