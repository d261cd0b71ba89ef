import type { PitrBenchResults } from "./pitr";
import { writeSection } from "./sections";

/**
 * The point-in-time recovery section of BENCHMARKS.md, rendered from `bench/results-pitr.json` and placed
 * between its markers (added at the end the first time), so the main suite's report and this one are
 * written by separate runs without overwriting each other.
 */

const BEGIN = "<!-- pitr:begin (written by `npm run bench -- --pitr`) -->";
const END = "<!-- pitr:end -->";

/** The section's markdown. */
export function renderPitr(r: PitrBenchResults, command: string): string {
  const lines = [
    "## Point-in-time recovery (binlog archive and replay)",
    "",
    `Run ${r.startedAt} → ${r.finishedAt} with \`${command}\` on ${r.machine.cores} cores (${r.machine.cpuModel}), ` +
      `load average ${r.machine.loadAverageAtStart.toFixed(1)} → ${(r.machine.loadAverageAtEnd ?? NaN).toFixed(1)}; ` +
      `dataset ${r.dataset.tables} × ${r.dataset.tableSize} rows; archiver RPO ${r.rpoSeconds} s (segments cut after half of it).`,
    "",
    "RPO lag: for every segment, from its first transaction's commit on the primary (the binlog's whole-second " +
      "timestamp) to its ledger entry in S3, the longest any of its transactions waited. It includes the " +
      "replica's own delay behind the primary (the archiver reads the replica's binlog), shown beside it with " +
      "the archiver's own share: from the segment's first transaction committed in the replica's binlog " +
      "(SHOW MASTER STATUS sampled every 200 ms) to its ledger entry in S3.",
    "",
    "| phase | primary tx/s | segments | lag p50 | lag p99 | lag max | archiver's own p50 / p99 / max | replica delay p99 | archiver CPU | archiver peak RSS |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ...r.phases.map(
      (p) =>
        `| ${p.name} | ${p.primaryTps} | ${p.segments} | ${p.lag.p50} s | ${p.lag.p99} s | ${p.lag.max} s | ` +
        `${p.archiverLag ? `${p.archiverLag.p50} / ${p.archiverLag.p99} / ${p.archiverLag.max} s` : "n/a"} | ` +
        `${p.replicaDelay.p99} s | ${p.archiverCpuPercent} % of a core | ${p.archiverPeakRssMiB} MiB |`,
    ),
    "",
  ];
  if (r.replay !== undefined) {
    const rp = r.replay;
    const base = r.phases.find((p) => p.targetRate === 200)?.primaryTps;
    const max = r.phases.find((p) => p.targetRate === 0)?.primaryTps;
    const ratio = (tps: number, of: number | undefined) => (of ? `${(tps / of).toFixed(1)}×` : "n/a");
    lines.push(
      `Replay of the ${rp.transactions} transactions both phases wrote (${rp.segments} segments), from a snapshot taken before them:`,
      "",
      "| replay | seconds | tx/s | × the 200 tx/s primary | × the fastest primary |",
      "| --- | ---: | ---: | ---: | ---: |",
      `| ours: relay logs, parallel applier (\`restore --until latest\`) | ${rp.ours.seconds} | ${rp.ours.tps} | ${ratio(rp.ours.tps, base)} | ${ratio(rp.ours.tps, max)} |`,
      `| plain \`mariadb-binlog \\| mariadb\` | ${rp.plain.seconds} | ${rp.plain.tps} | ${ratio(rp.plain.tps, base)} | ${ratio(rp.plain.tps, max)} |`,
      "",
    );
  }
  for (const note of r.notes) lines.push(`- note: ${note}`);
  return lines.join("\n");
}

/** The PITR section of an existing report, kept when the main suite rewrites the file ("" when none). */
export function keptPitrSection(existing: string): string {
  const at = existing.indexOf(BEGIN);
  const end = existing.indexOf(END);
  return at >= 0 && end > at ? `\n${existing.slice(at, end + END.length)}\n` : "";
}

/** Puts the section into the report file, replacing the previous one. */
export async function writePitrSection(
  reportPath: string,
  results: PitrBenchResults,
  command: string,
): Promise<void> {
  await writeSection(
    reportPath,
    { begin: BEGIN, end: END },
    `${BEGIN}\n\n${renderPitr(results, command)}\n\n${END}`,
  );
}
