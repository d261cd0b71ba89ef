import type { LargeResults, LargeSize } from "./large";
import type { Measured } from "./results";
import { writeSection } from "./sections";

/**
 * The large-run section of BENCHMARKS.md (`npm run bench -- --large`), between its own `bench:…` markers so
 * the main suite's re-render keeps it; replaced in place on the next large run.
 */

const START = "<!-- bench:large-run:start -->";
const END = "<!-- bench:large-run:end -->";
/** Where a first large-run section goes: after issue 16's section, else at the end. */
const AFTER = "<!-- bench:issue16:end -->";

const gb = (bytes: number | undefined) => (bytes === undefined ? "n/a" : `${(bytes / 1e9).toFixed(2)} GB`);
const mib = (bytes: number | undefined) =>
  bytes === undefined ? "n/a" : `${(bytes / 2 ** 20).toFixed(0)} MiB`;
const cpu = (m: Measured) => m.cpuUserSeconds + m.cpuSysSeconds;

/** Raw bytes a step processed: the datadir the backup read, which the verify and the restore rebuild. */
function dataBytes(size: LargeSize): number {
  return size.backup?.rawBytes ?? size.datadirBytes;
}

function row(step: string, size: LargeSize, m: Measured | undefined, extra = ""): string {
  if (m === undefined) return `| ${size.targetGb} GB | ${step} | not reached | | | | | ${extra} |`;
  const bytes = dataBytes(size);
  return (
    `| ${size.targetGb} GB | ${step} | ${m.wallSeconds.toFixed(0)} | ${(bytes / m.wallSeconds / 1e6).toFixed(0)} | ` +
    `${cpu(m).toFixed(0)} | ${(bytes / cpu(m) / 1e6).toFixed(0)} | ${mib(m.peakRssBytes)} | ${extra} |`
  );
}

/** Seconds per byte at the large size over seconds per byte at the small one: 1.00 is linear. */
function ratio(small: LargeSize, large: LargeSize, pick: (s: LargeSize) => Measured | undefined): string {
  const a = pick(small);
  const b = pick(large);
  if (a === undefined || b === undefined) return "n/a";
  const wall = b.wallSeconds / dataBytes(large) / (a.wallSeconds / dataBytes(small));
  const cpuRatio = cpu(b) / dataBytes(large) / (cpu(a) / dataBytes(small));
  return `${wall.toFixed(2)} (CPU ${cpuRatio.toFixed(2)})`;
}

/** The section's markdown. */
export function renderLarge(r: LargeResults): string {
  const [small, large] = r.sizes;
  const lines = [
    START,
    "",
    "### Large run: backup, verify and restore at real sizes (issue 16, item 3)",
    "",
    `Run ${r.startedAt} → ${r.finishedAt ?? "(stopped before the end)"} with \`${r.command}\` on ` +
      `${r.machine.cores} cores (${r.machine.cpuModel}), ${(r.machine.memoryBytes / 2 ** 30).toFixed(0)} GiB, load average ` +
      `${r.machine.loadAverageAtStart.toFixed(1)} → ${(r.machine.loadAverageAtEnd ?? NaN).toFixed(1)}. Data: ` +
      `${r.base.tables} × ${r.base.tableSize} sysbench rows copied on the replica as transportable tablespaces; ` +
      `chunks of ${r.chunkMiB} MiB; objects in the lab's emulator (fauxqs, in memory). MB/s are of the replica's ` +
      "datadir bytes (what the backup reads and the verify and restore rebuild); peak RSS is the CLI's own " +
      "(the verifier's scratch mariadbd excluded).",
    "",
    "| size | step | wall s | MB/s | CPU-s | MB per CPU-s | peak RSS | notes |",
    "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
  ];
  for (const size of r.sizes) {
    const archive = size.backup?.archiveBytes;
    lines.push(
      `| ${size.targetGb} GB | data made (${size.copiedTables} tables copied) | ${size.generateSeconds.toFixed(0)} | | | | | datadir ${gb(size.datadirBytes)} |`,
      row("backup", size, size.backup, `archive ${gb(archive)} (${size.backup?.backupId ?? "?"})`),
      row(
        "verify (restore, checks, checksums)",
        size,
        size.verify,
        `verdict ${size.verify?.verdict ?? "n/a"}: ${size.verify?.tables ?? "?"} tables ` +
          `(${size.verify?.copies ?? "?"} copies), ${size.verify?.rows ?? "?"} rows, ${size.verify?.checksums ?? "?"} checksums`,
      ),
      row("restore", size, size.restore, `restored ${gb(size.restore?.bytes)}`),
    );
  }
  lines.push("");
  if (small !== undefined && large !== undefined) {
    lines.push(
      `Scaling, seconds per byte at ${large.targetGb} GB ÷ at ${small.targetGb} GB (1.00 = linear; the target is within 10 %): ` +
        `backup ${ratio(small, large, (s) => s.backup)}, verify ${ratio(small, large, (s) => s.verify)}, ` +
        `restore ${ratio(small, large, (s) => s.restore)}.`,
      "",
    );
  }
  for (const size of r.sizes) {
    const timings = Object.entries(size.verify?.timings ?? {})
      .map(([k, v]) => `${k} ${v.toFixed(0)} s`)
      .join(", ");
    lines.push(
      `- ${size.targetGb} GB: emulator RSS ${mib(size.emulatorRssBytes)} after the restore, peak ${mib(size.emulatorPeakRssBytes)}; ` +
        `disk free ${gb(size.diskFreeBefore)} before the backup, ${gb(size.diskFreeAfter)} at the end` +
        (timings ? `; verification timings: ${timings}` : "") +
        ".",
    );
  }
  for (const note of r.notes) lines.push(`- note: ${note}`);
  lines.push("", END);
  return lines.join("\n");
}

/** Writes the section into the report at `path` (replacing the last one), formatted as prettier wants. */
export async function writeLargeSection(path: string, r: LargeResults): Promise<void> {
  await writeSection(path, { begin: START, end: END, after: AFTER }, renderLarge(r));
}
