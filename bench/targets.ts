import type { BenchResults, CompetitorResult, TargetVerdict } from "./results";
import { median } from "./stall";
import { commitsHeldMs, spread } from "./results";

/**
 * The targets of issue 7 (and the benchmark targets of issue 2), judged on one run's results. Each
 * verdict says how its figure was computed and, when missed, by how much — the wording BENCHMARKS.md shows.
 */

/** Peak RSS limit of backup and verify: 256 MiB. */
export const RSS_LIMIT_BYTES = 256 * 2 ** 20;

/** Our archive throughput (raw bytes / archive seconds), median over our backups. */
export function ourArchiveThroughput(results: BenchResults): number | undefined {
  const rates = results.ours.backups.flatMap((b) =>
    b.rawBytes !== undefined && b.archiveSeconds !== undefined && b.archiveSeconds > 0
      ? [b.rawBytes / b.archiveSeconds]
      : [],
  );
  return rates.length > 0 ? median(rates) : undefined;
}

/** The plain `tar | zstd -T0 -1` throughput, median over the limit measurements. */
export function plainTarZstdThroughput(results: BenchResults): number | undefined {
  const rates = results.limit.flatMap((l) =>
    l.tarZstd.bytes !== undefined ? [l.tarZstd.bytes / l.tarZstd.wallSeconds] : [],
  );
  return rates.length > 0 ? median(rates) : undefined;
}

/** The raw read throughput of a snapshot, median over the limit measurements. */
export function rawReadThroughput(results: BenchResults): number | undefined {
  const rates = results.limit.flatMap((l) =>
    l.rawRead.bytes !== undefined ? [l.rawRead.bytes / l.rawRead.wallSeconds] : [],
  );
  return rates.length > 0 ? median(rates) : undefined;
}

function competitor(results: BenchResults, name: CompetitorResult["name"]): CompetitorResult | undefined {
  return results.competitors.find((c) => c.name === name);
}

function verdict(
  target: string,
  limit: number,
  unit: string,
  measuredValue: number | undefined,
  atMost: boolean,
  how: string,
): TargetVerdict {
  if (measuredValue === undefined) {
    return { target, limit, unit, detail: `not measured in this run (${how})` };
  }
  const met = atMost ? measuredValue <= limit : measuredValue >= limit;
  const gap = atMost ? measuredValue - limit : limit - measuredValue;
  const by = met ? "" : `; missed by ${round(gap)} ${unit} (${round((gap / limit) * 100)} % of the target)`;
  return { target, limit, unit, measured: measuredValue, met, detail: `${how}${by}` };
}

function round(value: number): string {
  return Math.abs(value) >= 10 ? value.toFixed(0) : value.toFixed(2);
}

/** Every target, judged. */
export function evaluateTargets(results: BenchResults): TargetVerdict[] {
  const backups = results.ours.backups;
  const held = spread(backups.map(commitsHeldMs));
  const lock = spread(backups.map((b) => b.lockMs));
  const stall = spread(backups.map((b) => b.stall.stallMs));
  const lockStall = spread(backups.map((b) => b.lockStall?.stallMs));
  const ours = ourArchiveThroughput(results);
  const plain = plainTarZstdThroughput(results);
  const toQueryable = results.ours.verify?.toQueryableSeconds;
  const reload = competitor(results, "mysqldump")?.restore?.loadSeconds;
  const myloader = competitor(results, "mydumper")?.restore?.loadSeconds;
  const backupRss = spread(backups.map((b) => b.peakRssBytes));
  const verifyRss = results.ours.verify?.peakRssBytes;
  const mib = (bytes: number | undefined) => (bytes === undefined ? undefined : bytes / 2 ** 20);
  return [
    verdict(
      "lock window p99 under write load (commits held)",
      100,
      "ms",
      held?.p99,
      true,
      `p99 (nearest rank) of ${held?.n ?? 0} backups of the time the replica's commits were held (\`holdMs\`: ` +
        `BLOCK_COMMIT or FTWRL to unlock); median ${round(held?.median ?? NaN)} ms, max ${round(held?.max ?? NaN)} ms; ` +
        `the whole window with the stages before the hold (\`lockMs\`): median ${round(lock?.median ?? NaN)} ms, ` +
        `p99 ${round(lock?.p99 ?? NaN)} ms`,
    ),
    verdict(
      "replication stall per backup",
      100,
      "ms",
      stall?.max,
      true,
      `worst of ${stall?.n ?? 0} backups (longest applier gap during the backup minus the normal gap); median ${round(stall?.median ?? NaN)} ms; ` +
        `over the lock window alone: median ${round(lockStall?.median ?? NaN)} ms, max ${round(lockStall?.max ?? NaN)} ms` +
        controlDetail(results),
    ),
    verdict(
      "archive throughput vs plain tar | zstd -T0 -1",
      90,
      "%",
      ours !== undefined && plain !== undefined ? (ours / plain) * 100 : undefined,
      false,
      `ours ${mbps(ours)} (median of our backups) vs plain ${mbps(plain)} (median of ${results.limit.length} fresh snapshots)`,
    ),
    verdict(
      "restore to queryable vs mysqldump reload",
      4,
      "×",
      ratio(reload, toQueryable),
      false,
      `reload ${secs(reload)} (load into a running server) / ours ${secs(toQueryable)} (download + extract + recovery)`,
    ),
    verdict(
      "restore to queryable vs myloader",
      2,
      "×",
      ratio(myloader, toQueryable),
      false,
      `myloader ${secs(myloader)} (load into a running server) / ours ${secs(toQueryable)}`,
    ),
    verdict(
      `peak RSS of backup (${results.size})`,
      256,
      "MiB",
      mib(backupRss?.max),
      true,
      `largest of ${backupRss?.n ?? 0} backups: node + zstd, polled every 50 ms`,
    ),
    verdict(
      `peak RSS of verify (${results.size})`,
      256,
      "MiB",
      mib(verifyRss),
      true,
      "node + zstd of the verifier, polled every 50 ms; the scratch mariadbd (its own buffer pool) left out",
    ),
  ];
}

function ratio(slow: number | undefined, fast: number | undefined): number | undefined {
  return slow !== undefined && fast !== undefined && fast > 0 ? slow / fast : undefined;
}

function mbps(bytesPerSecond: number | undefined): string {
  return bytesPerSecond === undefined ? "n/a" : `${(bytesPerSecond / 1e6).toFixed(0)} MB/s`;
}

function secs(seconds: number | undefined): string {
  return seconds === undefined ? "n/a" : `${seconds.toFixed(1)} s`;
}

/** The control windows (no backup running) in words, for the stall verdict; empty when not measured. */
function controlDetail(results: BenchResults): string {
  const control = results.control;
  if (control === undefined || control.stalls.length === 0) return "";
  const values = control.stalls.map((s) => s.stallMs);
  return (
    `; the same measure over ${values.length} windows of ${control.windowSeconds.toFixed(1)} s with no backup running: ` +
    `${values.map((v) => round(v)).join(", ")} ms (median ${round(median(values))} ms)`
  );
}
