import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { GetObjectCommand, ListObjectsV2Command, type S3Client } from "@aws-sdk/client-s3";
import { StatusReader } from "../hostscripts/status/scan";
import { collectStatus } from "../hostscripts/status/status";
import { startStandaloneEmulator } from "../lab/emulator";
import { seedBackups, syntheticEstate } from "../lab/synthetic";
import { describeMachine, loadAverageNow, type Machine } from "./machine";

/**
 * `npm run bench:status`: how long `mysql-backup status` takes over a bucket with thousands of backups, side by
 * side in one run with the naive way (list the keys, then read every manifest and every verdict), both
 * against the S3 emulator on this machine. Writes `bench/results-status.json` and its section of BENCHMARKS.md
 * (between the `bench:status` markers, which `npm run bench` keeps).
 */

const USAGE = `usage: npm run bench:status -- [--clusters N] [--hosts N] [--backups N] [--runs N] [--out DIR]

  --clusters  clusters in the synthetic estate (default 3)
  --hosts     replicas per cluster (default 4)
  --backups   backups per replica, one every 8 h, all verified but the newest (default 250: 3,000 in all)
  --runs      timed runs of each method, median reported (default 3)
  --out       where results-status.json and BENCHMARKS.md go (default: bench/ and ./)`;

const START = "<!-- bench:status:start -->";
const END = "<!-- bench:status:end -->";

/** One method's figures over the runs. */
interface MethodResult {
  seconds: number[];
  medianSeconds: number;
  listRequests: number;
  objectsFetched: number;
}

/** What `results-status.json` holds. */
interface StatusBench {
  date: string;
  machine: Machine;
  backups: number;
  objects: number;
  estate: { clusters: number; hosts: number; backupsPerHost: number };
  ours: MethodResult;
  naive: MethodResult;
  /** naive median / ours median. */
  speedup: number;
  command: string;
}

async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      clusters: { type: "string", default: "3" },
      hosts: { type: "string", default: "4" },
      backups: { type: "string", default: "250" },
      runs: { type: "string", default: "3" },
      out: { type: "string" },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) return console.log(USAGE);
  const [clusters, hosts, backupsPerHost, runs] = [
    values.clusters,
    values.hosts,
    values.backups,
    values.runs,
  ].map((v, i) => positive(["--clusters", "--hosts", "--backups", "--runs"][i], v));
  const repo = resolve(__dirname, "..");
  const out = values.out === undefined ? null : resolve(values.out);
  const dir = await mkdtemp(join(tmpdir(), "mbp-bench-status-"));
  const emulator = await startStandaloneEmulator(dir);
  try {
    const now = new Date();
    const estate = syntheticEstate({
      prefix: "backups",
      clusters: Array.from({ length: clusters }, (_, i) => `cluster${i + 1}`),
      hosts,
      backupsPerHost,
      everyHours: 8,
      now,
    });
    say(`seeding ${estate.length} backups`);
    const objects = await seedBackups(emulator.clients.s3, emulator.bucket, estate);
    const ours = await measure(runs, async () => {
      const reader = new StatusReader(emulator.clients.s3, emulator.bucket, "backups");
      const report = await collectStatus(reader, { s3: { bucket: emulator.bucket } }, {}, now);
      if (report.health !== "ok")
        throw new Error(`the synthetic estate should be ok, status says ${report.health}`);
      return report.reads;
    });
    const naive = await measure(runs, () => readEverything(emulator.clients.s3, emulator.bucket, "backups/"));
    const result: StatusBench = {
      date: now.toISOString(),
      machine: { ...(await describeMachine()), loadAverageAtEnd: loadAverageNow() },
      backups: estate.length,
      objects,
      estate: { clusters, hosts, backupsPerHost },
      ours,
      naive,
      speedup: naive.medianSeconds / ours.medianSeconds,
      command: `npm run bench:status -- --clusters ${clusters} --hosts ${hosts} --backups ${backupsPerHost} --runs ${runs}`,
    };
    await writeFile(
      join(out ?? join(repo, "bench"), "results-status.json"),
      JSON.stringify(result, null, 2) + "\n",
    );
    const reportPath = join(out ?? repo, "BENCHMARKS.md");
    await writeFile(
      reportPath,
      withSection(await readFile(reportPath, "utf8").catch(() => ""), render(result)),
    );
    say(
      `status: ${ours.medianSeconds.toFixed(2)} s, naive: ${naive.medianSeconds.toFixed(2)} s (${result.speedup.toFixed(1)}×)`,
    );
  } finally {
    await emulator.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

/** Runs `method` `runs` times; the reads are those of the last run (they do not vary). */
async function measure(
  runs: number,
  method: () => Promise<{ listRequests: number; objectsFetched: number }>,
): Promise<MethodResult> {
  const seconds: number[] = [];
  let reads = { listRequests: 0, objectsFetched: 0 };
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    reads = await method();
    seconds.push((performance.now() - t0) / 1000);
  }
  const sorted = [...seconds].sort((a, b) => a - b);
  return { seconds, medianSeconds: sorted[Math.floor(sorted.length / 2)], ...reads };
}

/** The naive way: list every key, then GET every manifest and verdict, 8 at a time (as `status` reads hosts). */
async function readEverything(
  s3: S3Client,
  bucket: string,
  prefix: string,
): Promise<{ listRequests: number; objectsFetched: number }> {
  const keys: string[] = [];
  let listRequests = 0;
  let token: string | undefined;
  do {
    const page = await s3.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
    );
    listRequests++;
    keys.push(...(page.Contents ?? []).map((o) => o.Key ?? "").filter((k) => k.endsWith(".json")));
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token !== undefined);
  let next = 0;
  const worker = async () => {
    while (next < keys.length) {
      const response = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: keys[next++] }));
      JSON.parse((await response.Body?.transformToString()) ?? "");
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  return { listRequests, objectsFetched: keys.length };
}

function render(r: StatusBench): string {
  const row = (name: string, m: MethodResult) =>
    `| ${name} | ${m.medianSeconds.toFixed(2)} | ${m.seconds.map((s) => s.toFixed(2)).join(", ")} | ${m.listRequests} | ${m.objectsFetched} |`;
  return `${START}
## \`mysql-backup status\` over ${r.backups.toLocaleString("en")} backups

${r.estate.clusters} clusters × ${r.estate.hosts} replicas × ${r.estate.backupsPerHost} backups (${r.objects.toLocaleString("en")} objects: archive, manifest and verdict of each),
synthetic (\`lab/synthetic.ts\`), in the S3 emulator (fauxqs) on this machine; ${r.date.slice(0, 10)}, ${r.machine.cores} × ${r.machine.cpuModel},
load average ${r.machine.loadAverageAtStart.toFixed(2)} → ${(r.machine.loadAverageAtEnd ?? 0).toFixed(2)} (shared machine).

| method | median s | runs (s) | list requests | objects fetched |
|---|---:|---|---:|---:|
${row("`status` (keys listed; newest manifest and verdicts down to the newest verified, per host)", r.ours)}
${row("naive (keys listed; every manifest and verdict read)", r.naive)}

\`status\` is ${r.speedup.toFixed(1)}× faster here, and fetches 2 objects per healthy host whatever the number of backups;
its listing grows with the number of keys (1 request per 1,000). Against S3 itself each GET is a round trip of
tens of ms, so the ratio grows. Command: \`${r.command}\`.
${END}
`;
}

/** `existing` with its status section replaced, or the section appended. */
export function withSection(existing: string, section: string): string {
  const start = existing.indexOf(START);
  const end = existing.indexOf(END);
  if (start >= 0 && end > start)
    return existing.slice(0, start) + section.trimEnd() + existing.slice(end + END.length);
  return `${existing.trimEnd()}\n\n${section}`;
}

function positive(flag: string, value: string | undefined): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${flag} must be a positive integer\n${USAGE}`);
  return n;
}

function say(message: string): void {
  process.stderr.write(`bench:status ${new Date().toISOString().slice(11, 19)} ${message}\n`);
}

if (require.main === module) {
  main(process.argv.slice(2)).catch((e: Error) => {
    console.error(e.message);
    process.exit(1);
  });
}
