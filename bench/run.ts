import { mkdir, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import { format, resolveConfig } from "prettier";
import {
  labAwsClients,
  labDown,
  readLab,
  startLoad,
  stopLoad,
  waitForReplicaCatchUp,
  type Lab,
} from "../lab/lab";
import { VERIFIER_NODE_OPTIONS } from "../contracts/units";
import { rootQuery } from "../lab/mariadb";
import { PRODUCT_CHUNK_MIB, benchBackupConfig, clearRemote, freshLab, say } from "./benchlab";
import {
  COMPETITORS,
  artifactBytes,
  artifactPath,
  backupCommand as competitorBackupCommand,
  prepareBackup,
  restoreCompetitor,
  type CompetitorName,
} from "./competitors";
import { benchSnapshotDir, deleteSnapshot, measureLimit, treeBytes } from "./limit";
import { runLargeSuite, type LargeResults } from "./large";
import { writeLargeSection } from "./large-report";
import { measureLockModes, type LockModesResults } from "./lockmodes";
import { describeMachine, loadAverageNow } from "./machine";
import { mustRunMeasured, type CommandRun } from "./measure";
import { backupCommand, buildCli, numberAt, runPipeline, stringAt, verifyCommand } from "./pipeline";
import { runPitrBench, writePitrResults } from "./pitr";
import { runChainBench, type ChainBenchResults } from "./chain";
import { writeChainSection } from "./chain-report";
import { hashRates, plainExtract, restoreScaling } from "./scaling";
import { writePitrSection } from "./pitr-report";
import { renderReport } from "./report";
import {
  measured,
  type BenchResults,
  type CompetitorResult,
  type OurBackup,
  type OurVerify,
  type SizeName,
} from "./results";
import { median, type StallMeasurement } from "./stall";
import { evaluateTargets } from "./targets";
import { lockStall, placeGap, withStallWatch } from "./watch";

/**
 * `npm run bench`: builds a lab with a sysbench dataset on the replica and measures, in one run, our
 * backup and restore next to mysqldump, mydumper and mariabackup, and next to what the machine can do
 * (a raw read and `tar | zstd` of a snapshot). Writes `bench/results.json` and `BENCHMARKS.md`.
 * Everything it starts (lab, load, scratch servers, snapshots) is removed in the end, also on Ctrl-C.
 */

const USAGE = `usage: npm run bench -- [--lock-modes [--mariabackups N]] [--size tiny|small|2g|8g] [--backups N] [--rate TPS] [--dir DIR] [--out DIR] [--keep-lab]
       npm run bench -- --large [--gb 20] [--base-gb 2] [--dir DIR] [--out DIR]

  --lock-modes    run only the lock-modes suite (bench/lockmodes.ts): applier blocked per backup in each lock mode,
                  at 200 tx/s and at the lab's maximum rate, next to mariabackup; writes results-lockmodes.json and
                  re-renders BENCHMARKS.md with the last results.json
  --mariabackups  mariabackup runs per load in the lock-modes suite (default 3)
  --size      dataset on the lab replica: small ≈ 200 MB, 2g ≈ 2 GB (default; small for --lock-modes), 8g ≈ 8 GB; tiny for smoke tests
  --backups   how many of our backups to take under load (default 10; the lock window needs ≥ 10); per mode and load with --lock-modes
  --rate      transactions per second sysbench writes to the primary during the backups (default 100)
  --dir       the bench's lab directory (default /tmp/mysql-backup-bench; removed at the end)
  --out       where results.json and BENCHMARKS.md go (default: bench/results.json and ./BENCHMARKS.md)
  --keep-lab  leave the lab running at the end (for looking around; remove with npm run lab -- down --dir DIR)
  --render    measure nothing: re-render BENCHMARKS.md from results.json (keeps its analysis section)
  --pitr      run the point-in-time recovery suite instead (bench/pitr.ts): RPO lag at 200 tx/s and at the lab's
              fastest rate, the archiver's CPU and RSS, replay next to mariadb-binlog | mariadb; writes
              bench/results-pitr.json and the PITR section of BENCHMARKS.md
  --pitr-seconds  length of each PITR load phase (default 120)
  --chain     run the PITR-proof suite instead (bench/chain.ts): snapshot A, then per round load, snapshot B and
              \`verify --once\` over B with the chain proof A → B and the drill; B's verification, the chain and its
              replay against the primary's rate, the drill's RTO, the verifier's peak RSS; writes
              bench/results-chain.json and its section of BENCHMARKS.md (--chain --render: only re-render it).
              Defaults: --size small, --rate 100
  --rounds    chain rounds (default 3)
  --chain-seconds  seconds of load between two snapshots in the chain suite (default 60)
  --verifier-node-options  NODE_OPTIONS for the chain suite's verifier (default "${VERIFIER_NODE_OPTIONS}", as its unit
              runs it; "" for V8's defaults)
  --large     run the large-run suite instead (bench/large.ts): the replica grown to --base-gb and then --gb GB of
              table data (copies of sysbench tables), each backed up, verified in full and restored; writes
              bench/results-large.json and the large-run section of BENCHMARKS.md. Needs about 2.5 × --gb of free disk
  --gb        the large size in GB (default 20)
  --base-gb   the small size measured first in the same run, for the scaling ratio (default 2)
              (--large --render: only re-render its section from results-large.json)`;

/** sysbench tables × rows and the btrfs image size per dataset size. */
const SIZES: Record<SizeName, { tables: number; tableSize: number; imageSizeGiB: number }> = {
  tiny: { tables: 2, tableSize: 10_000, imageSizeGiB: 4 },
  small: { tables: 4, tableSize: 200_000, imageSizeGiB: 8 },
  "2g": { tables: 8, tableSize: 1_000_000, imageSizeGiB: 24 },
  "8g": { tables: 32, tableSize: 1_000_000, imageSizeGiB: 64 },
};

/**
 * The write load on the primary while backups run. 100 tx/s rather than the lab's 200: on this shared
 * 2-core machine the replica's single applier (fsync per commit on a loop-file volume) does not keep
 * up with 200 when other work runs, and a lagging replica turns every later figure into catch-up time.
 */
const DEFAULT_RATE = 100;
const LOAD_THREADS = 2;
/** The scratch server's memory is the database's (its own buffer pool), not the verifier's. */
const SERVER_PROCESS_NAMES = ["mariadbd", "mysqld"];

interface Options {
  size: SizeName;
  backups: number;
  dir: string;
  resultsPath: string;
  reportPath: string;
  keepLab: boolean;
  /** Only re-render the report from the results file (after editing the analysis, or the renderer). */
  render: boolean;
  /** Transactions per second of the write load. */
  rate: number;
  /** Run the lock-modes suite instead of the main run. */
  lockModes: boolean;
  /** mariabackup runs per load in the lock-modes suite. */
  mariabackups: number;
  /** Where the lock-modes suite's results go (next to results.json). */
  lockModesPath: string;
  /** The command line, as BENCHMARKS.md shows it. */
  command: string;
  /** Run the point-in-time recovery suite instead of the backup suite. */
  pitr: boolean;
  /** Seconds of each PITR load phase. */
  pitrSeconds: number;
  /** Run the PITR-proof (chain) suite instead. */
  chain: boolean;
  /** Its rounds, and seconds of load between two snapshots. */
  rounds: number;
  chainSeconds: number;
  verifierNodeOptions: string;
  /** Run the large-run suite instead of the backup suite. */
  large: boolean;
  /** Its large and small sizes in GB. */
  gb: number;
  baseGb: number;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      size: { type: "string" },
      "lock-modes": { type: "boolean", default: false },
      mariabackups: { type: "string", default: "3" },
      backups: { type: "string", default: "10" },
      rate: { type: "string", default: String(DEFAULT_RATE) },
      dir: { type: "string", default: "/tmp/mysql-backup-bench" },
      out: { type: "string" },
      "keep-lab": { type: "boolean", default: false },
      render: { type: "boolean", default: false },
      pitr: { type: "boolean", default: false },
      "pitr-seconds": { type: "string", default: "120" },
      chain: { type: "boolean", default: false },
      rounds: { type: "string", default: "3" },
      "chain-seconds": { type: "string", default: "60" },
      "verifier-node-options": { type: "string", default: VERIFIER_NODE_OPTIONS },
      large: { type: "boolean", default: false },
      gb: { type: "string", default: "20" },
      "base-gb": { type: "string", default: "2" },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const size = values.size ?? (values["lock-modes"] ? "small" : values.chain ? "small" : "2g");
  if (!(size in SIZES)) throw new Error(`--size must be one of ${Object.keys(SIZES).join(", ")}\n${USAGE}`);
  const mariabackups = Number(values.mariabackups);
  if (!Number.isInteger(mariabackups) || mariabackups < 0)
    throw new Error(`--mariabackups must be a whole number\n${USAGE}`);
  const backups = Number(values.backups);
  if (!Number.isInteger(backups) || backups < 1)
    throw new Error(`--backups must be a positive integer\n${USAGE}`);
  const rate = Number(values.rate);
  if (!Number.isInteger(rate) || rate < 1) throw new Error(`--rate must be a positive integer\n${USAGE}`);
  const rounds = Number(values.rounds);
  const chainSeconds = Number(values["chain-seconds"]);
  if (!Number.isInteger(rounds) || rounds < 1 || !(chainSeconds > 0))
    throw new Error(`--rounds must be a positive integer and --chain-seconds a positive number\n${USAGE}`);
  const gb = Number(values.gb);
  const baseGb = Number(values["base-gb"]);
  if (!(gb > 0) || !(baseGb > 0) || baseGb >= gb)
    throw new Error(`--gb and --base-gb must be positive numbers, --base-gb the smaller\n${USAGE}`);
  const repo = resolve(__dirname, "..");
  const out = values.out === undefined ? undefined : resolve(values.out);
  const resultsPath = out ? join(out, "results.json") : join(repo, "bench", "results.json");
  return {
    size: size as SizeName,
    backups,
    dir: resolve(values.dir),
    resultsPath,
    reportPath: out ? join(out, "BENCHMARKS.md") : join(repo, "BENCHMARKS.md"),
    keepLab: values["keep-lab"],
    render: values.render,
    rate,
    lockModes: values["lock-modes"],
    mariabackups,
    lockModesPath: join(resolve(resultsPath, ".."), "results-lockmodes.json"),
    command: ["npm run bench --", ...argv].join(" "),
    pitr: values.pitr,
    pitrSeconds: Number(values["pitr-seconds"]),
    chain: values.chain,
    rounds,
    chainSeconds,
    verifierNodeOptions: values["verifier-node-options"],
    large: values.large,
    gb,
    baseGb,
  };
}

/** The whole run. */
async function main(opts: Options): Promise<void> {
  const startedAt = new Date().toISOString();
  const machine = await describeMachine();
  const size = SIZES[opts.size];
  say(`bringing the lab up in ${opts.dir} (${size.tables} × ${size.tableSize} rows)`);
  const lab = await freshLab(opts.dir, size);
  const work = join(lab.dir, "bench-work");
  await mkdir(work, { recursive: true });
  const dataset = await describeDataset(lab);
  say(`dataset: ${gb(dataset.datadirBytes)} in the replica's datadir, ${dataset.rows} rows`);
  const notes: string[] = [];
  const results: BenchResults = {
    startedAt,
    finishedAt: "",
    machine,
    size: opts.size,
    dataset,
    load: { tool: "sysbench oltp_write_only", rate: opts.rate, threads: LOAD_THREADS },
    limit: [],
    ours: { backups: [] },
    competitors: [],
    targets: [],
    notes,
  };

  // As shipped: the product's chunk size (1 GiB of tar), not the lab's 64 MiB, which exists to give the tests
  // many chunks; a zstd per 64 MiB cost this 2.5 GB archive ≈ 1 s and 1.5 CPU-s (bench/archive-ab.ts).
  const backupConfigPath = await benchBackupConfig(lab, work, notes, (c) => ({
    ...c,
    compression: { ...c.compression, chunkMiB: PRODUCT_CHUNK_MIB },
  }));
  const { cli, problem } = await buildCli(work);
  if (problem !== undefined) notes.push(problem);
  await startLoad(lab, { rate: opts.rate, threads: LOAD_THREADS });
  await sleep(2_000);
  results.limit.push(await limit(lab, "before"));
  results.ours.backups = await ourBackups(lab, backupCommand(cli, backupConfigPath), opts.backups, notes);
  results.control = await attempt(notes, "control windows without a backup", () =>
    controlWindows(lab, results.ours.backups),
  );
  results.limit.push(await limit(lab, "after"));
  for (const name of COMPETITORS) results.competitors.push(await competitorBackup(lab, name, work));
  say("stopping the load; waiting for the replica to catch up");
  await stopLoad(lab);
  await waitForReplicaCatchUp(lab, 600_000);

  results.ours.verify = await attempt(notes, "our verification", () =>
    ourVerify(verifyCommand(cli, lab.verifyConfigPath)),
  );
  results.ours.plainExtract = await attempt(notes, "plain extract of our archive", () =>
    plainExtract(lab, work),
  );
  results.ours.restores = await attempt(notes, "our restore, one chunk at a time and on every core", () =>
    restoreScaling(lab, cli, work),
  );
  results.ours.hashRates = hashRates();
  for (const competitor of results.competitors) {
    if (competitor.backup === undefined) continue;
    say(`restoring ${competitor.name}`);
    const restore = await attempt(notes, `${competitor.name} restore`, () =>
      restoreCompetitor(competitor.name, work, countRows),
    );
    if (restore !== undefined) {
      competitor.restore = {
        ...restore,
        steps: restore.steps.map((s) => ({
          step: s.step,
          command: s.run.command,
          wallSeconds: s.run.wallSeconds,
        })),
      };
      if (restore.rowsRestored !== dataset.rows) {
        notes.push(
          `${competitor.name} restored ${restore.rowsRestored} sbtest rows, expected ${dataset.rows}`,
        );
      }
    }
  }

  machine.loadAverageAtEnd = loadAverageNow();
  results.finishedAt = new Date().toISOString();
  results.targets = evaluateTargets(results);
  await write(opts, results);
}

async function describeDataset(lab: Lab) {
  return {
    tables: lab.dataset.tables,
    tableSize: lab.dataset.tableSize,
    rows: await countRows(lab.replica.socket),
    datadirBytes: await treeBytes(lab.replica.datadir),
  };
}

/** Exact rows of the sbtest tables on a server. */
async function countRows(socket: string): Promise<number> {
  const tables = await rootQuery(
    socket,
    "SELECT table_name AS t FROM information_schema.tables WHERE table_schema = 'sbtest' AND table_type = 'BASE TABLE'",
  );
  let rows = 0;
  for (const { t } of tables) {
    const [count] = await rootQuery(socket, `SELECT COUNT(*) AS n FROM sbtest.\`${String(t)}\``);
    rows += Number(count?.n ?? 0);
  }
  return rows;
}

async function limit(lab: Lab, tag: string): Promise<BenchResults["limit"][number]> {
  say(`limit (${tag}): raw read and tar | zstd -T0 -1 of fresh snapshots`);
  const { rawRead, tarZstd } = await measureLimit(
    { socket: lab.replica.socket, subvolume: lab.replica.subvolume, mountPoint: lab.volume.mountPoint },
    tag,
  );
  return {
    tag,
    rawRead: measured(rawRead.run, rawRead.bytes),
    tarZstd: { ...measured(tarZstd.run, tarZstd.bytes), outputBytes: tarZstd.outputBytes },
  };
}

/** Control windows measured after our backups: how many, and at least how long each. */
const CONTROL_WINDOWS = 3;
const MIN_CONTROL_SECONDS = 5;

/**
 * The stall measurement run over windows as long as our median backup, with nothing but the write load
 * running: a longer window shows a longer longest gap by chance alone, and this says how long.
 */
async function controlWindows(
  lab: Lab,
  backups: OurBackup[],
): Promise<{ windowSeconds: number; stalls: StallMeasurement[] }> {
  const windowSeconds = Math.max(MIN_CONTROL_SECONDS, median(backups.map((b) => b.wallSeconds)));
  say(`control: ${CONTROL_WINDOWS} windows of ${windowSeconds.toFixed(1)} s with no backup running`);
  const stalls: StallMeasurement[] = [];
  for (let i = 0; i < CONTROL_WINDOWS; i++) {
    const { stall } = await withStallWatch(lab, () => sleep(windowSeconds * 1000));
    stalls.push(stall);
  }
  say(`control: longest gap minus normal gap ${stalls.map((s) => s.stallMs.toFixed(0)).join(", ")} ms`);
  return { windowSeconds, stalls };
}

/** Our backups in a row; the first failure ends the series (noted), keeping what was measured. */
async function ourBackups(lab: Lab, command: string, count: number, notes: string[]): Promise<OurBackup[]> {
  const { s3, sqs } = labAwsClients(lab);
  const backups: OurBackup[] = [];
  try {
    for (let i = 1; i <= count; i++) {
      const watched = await attempt(notes, `our backup ${i}/${count}`, () =>
        withStallWatch(lab, () => runPipeline("backup", command)),
      );
      if (watched === undefined) break;
      const { outcome, serverCpuSeconds, replicaLagSeconds, stall, trace } = watched;
      const { run, result } = outcome;
      const backup: OurBackup = {
        ...measured(run),
        lockMs: numberAt(result, "lockMs", "lock.ms", "lockWindowMs"),
        holdMs: numberAt(result, "holdMs"),
        archiveSeconds: numberAt(result, "archiveSeconds", "timings.archiveSeconds", "archive.seconds"),
        uploadSeconds: numberAt(result, "uploadSeconds", "timings.uploadSeconds", "upload.seconds"),
        archiveBytes: numberAt(result, "archiveBytes", "archive.bytes"),
        rawBytes: numberAt(result, "rawBytes", "archive.rawBytes"),
        serverCpuSeconds,
        replicaLagSeconds,
        stall,
        gapVsLock: placeGap(stall, run.stderr),
        lockStall: lockStall(trace, run.stderr),
        result,
      };
      backups.push(backup);
      say(
        `our backup ${i}/${count}: lock ${fmt(backup.lockMs)} ms, stall ${stall.stallMs.toFixed(0)} ms, ` +
          `wall ${run.wallSeconds.toFixed(1)} s, archive ${fmt(backup.archiveSeconds)} s, ` +
          `peak RSS ${(run.peakRssBytes / 2 ** 20).toFixed(0)} MiB`,
      );
      // The emulator keeps objects in memory: only the last backup stays, with its message, for the verifier.
      if (i < count) await clearRemote(lab, s3, sqs);
    }
  } finally {
    s3.destroy();
    sqs.destroy();
  }
  return backups;
}

async function competitorBackup(lab: Lab, name: CompetitorName, work: string): Promise<CompetitorResult> {
  await prepareBackup(name, work);
  const command = competitorBackupCommand(name, { replicaSocket: lab.replica.socket, work });
  say(`backup with ${name}`);
  try {
    const { outcome, serverCpuSeconds, replicaLagSeconds, stall } = await withStallWatch(lab, () =>
      mustRunMeasured(`${name} backup`, command),
    );
    const run: CommandRun = outcome;
    const bytes = await artifactBytes(artifactPath(name, work));
    say(`${name}: wall ${run.wallSeconds.toFixed(1)} s, stall ${stall.stallMs.toFixed(0)} ms, ${gb(bytes)}`);
    return {
      name,
      backup: { ...measured(run), artifactBytes: bytes, serverCpuSeconds, replicaLagSeconds, stall },
    };
  } catch (error) {
    say(`${name} backup failed: ${(error as Error).message}`);
    return { name, error: (error as Error).message };
  }
}

async function ourVerify(command: string): Promise<OurVerify> {
  say("our verification of the last backup");
  const { run, result } = await runPipeline("verification", command, {
    excludeFromRss: SERVER_PROCESS_NAMES,
  });
  if (stringAt(result, "verdict") === undefined) {
    throw new Error(`bench: our verification returned no verdict: ${JSON.stringify(result).slice(0, 500)}`);
  }
  const downloadExtractSeconds = numberAt(
    result,
    "downloadExtractSeconds",
    "timings.downloadExtractSeconds",
    "report.timings.downloadExtractSeconds",
  );
  const recoverySeconds = numberAt(
    result,
    "recoverySeconds",
    "timings.recoverySeconds",
    "report.timings.recoverySeconds",
  );
  const verify: OurVerify = {
    ...measured(run),
    verdict: stringAt(result, "verdict"),
    downloadExtractSeconds,
    recoverySeconds,
    checksSeconds: numberAt(result, "checksSeconds", "timings.checksSeconds", "report.timings.checksSeconds"),
    restoreSeconds: numberAt(result, "restoreSeconds", "timings.restoreSeconds", "report.restoreSeconds"),
    toQueryableSeconds:
      downloadExtractSeconds !== undefined && recoverySeconds !== undefined
        ? downloadExtractSeconds + recoverySeconds
        : undefined,
    result,
  };
  say(`verify: ${verify.verdict ?? "?"}, to queryable ${fmt(verify.toQueryableSeconds)} s`);
  return verify;
}

/** Runs an optional step; a failure becomes a note in the results instead of ending the run. */
async function attempt<T>(notes: string[], what: string, action: () => Promise<T>): Promise<T | undefined> {
  try {
    return await action();
  } catch (error) {
    const message = `${what} failed: ${(error as Error).message}`;
    say(message);
    notes.push(message);
    return undefined;
  }
}

async function write(opts: Options, results: BenchResults): Promise<void> {
  await mkdir(resolve(opts.resultsPath, ".."), { recursive: true });
  await writeFile(opts.resultsPath, `${JSON.stringify(results, null, 2)}\n`);
  // Formatted as `prettier --check .` (part of npm test) expects, with the repo's settings.
  const lockModes = await readFile(opts.lockModesPath, "utf8").then(
    (text) => JSON.parse(text) as LockModesResults,
    () => undefined,
  );
  const markdown = await renderReport(results, opts.reportPath, lockModes);
  const style = (await resolveConfig(opts.reportPath)) ?? {};
  await writeFile(opts.reportPath, await format(markdown, { ...style, parser: "markdown" }));
  say(`wrote ${opts.resultsPath} and ${opts.reportPath}`);
}

/** Removes what the bench made: its snapshots, then the whole lab (servers, load, scratch, volume). */
async function cleanUp(opts: Options): Promise<void> {
  const lab = await readLab(opts.dir).catch(() => undefined);
  if (lab !== undefined) {
    await stopLoad(lab).catch(() => undefined);
    const snapshots = benchSnapshotDir(lab.volume.mountPoint);
    for (const name of await readdir(snapshots).catch(() => [] as string[])) {
      await deleteSnapshot(join(snapshots, name));
    }
  }
  if (!opts.keepLab) await labDown(opts.dir);
}

function gb(bytes: number): string {
  return `${(bytes / 1e9).toFixed(2)} GB`;
}

function fmt(value: number | undefined): string {
  return value === undefined ? "n/a" : value.toFixed(value < 10 ? 2 : 1);
}

if (require.main === module) {
  let opts: Options;
  try {
    opts = parseOptions(process.argv.slice(2));
  } catch (error) {
    console.error((error as Error).message);
    process.exit(2);
  }
  if (opts.render) {
    (opts.large ? rerenderLarge(opts) : opts.chain ? rerenderChain(opts) : rerender(opts)).then(
      () => process.exit(0),
      (error: Error) => {
        console.error(`bench: ${error.message}`);
        process.exit(1);
      },
    );
  } else {
    measureAll(opts);
  }
}

/**
 * `--lock-modes`: the lock-modes suite on a lab of its own, then BENCHMARKS.md re-rendered from the last
 * results.json with the suite's section (a run into an empty `--out` has no results.json: then its figures
 * stay in results-lockmodes.json and the report is not written).
 */
async function lockModesRun(opts: Options): Promise<void> {
  const size = SIZES[opts.size];
  say(`lock modes: bringing the lab up in ${opts.dir} (${size.tables} × ${size.tableSize} rows)`);
  const lab = await freshLab(opts.dir, size);
  await mkdir(resolve(opts.lockModesPath, ".."), { recursive: true });
  await measureLockModes(lab, {
    command: opts.command,
    backups: opts.backups,
    mariabackups: opts.mariabackups,
    size,
    resultsPath: opts.lockModesPath,
  });
  say(`wrote ${opts.lockModesPath}`);
  const previous = await readFile(opts.resultsPath, "utf8").catch(() => undefined);
  if (previous === undefined) {
    say(
      `no ${opts.resultsPath} to render BENCHMARKS.md with; the suite's figures are in ${opts.lockModesPath}`,
    );
    return;
  }
  await rerender(opts);
}

/** `--pitr`: the point-in-time recovery suite (bench/pitr.ts) on a lab of the chosen size. */
async function pitrSuite(opts: Options): Promise<void> {
  const results = await runPitrBench({
    dir: opts.dir,
    size: SIZES[opts.size],
    phaseSeconds: opts.pitrSeconds,
    say,
  });
  const resultsPath = join(resolve(opts.resultsPath, ".."), "results-pitr.json");
  await writePitrResults(resultsPath, results);
  const command = `npm run bench -- --pitr --size ${opts.size} --pitr-seconds ${opts.pitrSeconds}`;
  await writePitrSection(opts.reportPath, results, command);
  say(`wrote ${resultsPath} and the PITR section of ${opts.reportPath}`);
}

/** `--chain`: the PITR-proof suite (bench/chain.ts); its section is written also when a round failed. */
async function chainSuite(opts: Options): Promise<void> {
  const resultsPath = join(resolve(opts.resultsPath, ".."), "results-chain.json");
  const results = await runChainBench({
    dir: opts.dir,
    size: SIZES[opts.size],
    rate: opts.rate,
    rounds: opts.rounds,
    loadSeconds: opts.chainSeconds,
    verifierNodeOptions: opts.verifierNodeOptions,
    command: `npm run bench -- --chain --size ${opts.size} --rate ${opts.rate} --rounds ${opts.rounds} --chain-seconds ${opts.chainSeconds}${opts.verifierNodeOptions === VERIFIER_NODE_OPTIONS ? "" : ` --verifier-node-options="${opts.verifierNodeOptions}"`}`,
    say,
  });
  await writeFile(resultsPath, `${JSON.stringify(results, null, 2)}\n`);
  await writeChainSection(opts.reportPath, results);
  say(`wrote ${resultsPath} and the chain section of ${opts.reportPath}`);
  if (results.rounds.length < opts.rounds)
    throw new Error(`only ${results.rounds.length} of ${opts.rounds} rounds ran (see the notes)`);
}

/** `--chain --render`: the chain section from an existing results-chain.json (no lab is touched). */
async function rerenderChain(opts: Options): Promise<void> {
  const resultsPath = join(resolve(opts.resultsPath, ".."), "results-chain.json");
  await writeChainSection(
    opts.reportPath,
    JSON.parse(await readFile(resultsPath, "utf8")) as ChainBenchResults,
  );
  say(`rendered the chain section of ${opts.reportPath} from ${resultsPath}`);
}

/** `--large`: the large-run suite (bench/large.ts); its section of BENCHMARKS.md is written even when a step failed. */
async function largeSuite(opts: Options): Promise<void> {
  const resultsPath = join(resolve(opts.resultsPath, ".."), "results-large.json");
  await mkdir(resolve(resultsPath, ".."), { recursive: true });
  // A previous run's file must not be rendered as this one's when this one fails before its first step.
  await rm(resultsPath, { force: true });
  try {
    await runLargeSuite({
      dir: opts.dir,
      gb: opts.gb,
      baseGb: opts.baseGb,
      resultsPath,
      command: opts.command,
    });
  } finally {
    const results = await readFile(resultsPath, "utf8").then(
      (text) => JSON.parse(text) as LargeResults,
      () => undefined,
    );
    if (results !== undefined) {
      await writeLargeSection(opts.reportPath, results);
      say(`wrote ${resultsPath} and the large-run section of ${opts.reportPath}`);
    }
  }
}

/** `--large --render`: the large-run section from an existing results-large.json (no lab is touched). */
async function rerenderLarge(opts: Options): Promise<void> {
  const resultsPath = join(resolve(opts.resultsPath, ".."), "results-large.json");
  await writeLargeSection(opts.reportPath, JSON.parse(await readFile(resultsPath, "utf8")) as LargeResults);
  say(`rendered the large-run section of ${opts.reportPath} from ${resultsPath}`);
}

/** `--render`: BENCHMARKS.md from an existing results.json, targets judged again. */
async function rerender(opts: Options): Promise<void> {
  const results = JSON.parse(await readFile(opts.resultsPath, "utf8")) as BenchResults;
  results.targets = evaluateTargets(results);
  await write(opts, results);
}

/** The whole run with its cleanup, also on Ctrl-C; exits with 0 when all went well. */
function measureAll(opts: Options): void {
  const run = opts.lockModes
    ? lockModesRun
    : opts.pitr
      ? pitrSuite
      : opts.chain
        ? chainSuite
        : opts.large
          ? largeSuite
          : main;
  let cleaning: Promise<void> | undefined;
  const cleanOnce = () => (cleaning ??= cleanUp(opts));
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      say(`${signal}: removing the lab, snapshots and scratch servers`);
      cleanOnce().finally(() => process.exit(130));
    });
  }
  run(opts)
    .then(
      () => cleanOnce().then(() => 0),
      async (error: Error) => {
        console.error(`bench failed: ${error.message}`);
        await cleanOnce().catch((cleanup: Error) =>
          console.error(`bench: cleanup failed too: ${cleanup.message}`),
        );
        return 1;
      },
    )
    .then(
      (code) => process.exit(code),
      (cleanup: Error) => {
        console.error(`bench: cleanup failed: ${cleanup.message}; run npm run lab -- down --dir ${opts.dir}`);
        process.exit(1);
      },
    );
}
