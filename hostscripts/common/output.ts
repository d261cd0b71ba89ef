import { fstatSync } from "node:fs";

/**
 * How the CLI speaks: JSON where a machine reads it (`--json`, or stdout is the systemd journal), plain
 * sentences and tables where a person does (a terminal, or a pipe into `less`, `grep` or a Nagios-style
 * check, which reads the first line of text).
 */

/**
 * True when stdout is connected to the journal: systemd sets `JOURNAL_STREAM` to the `device:inode` of the
 * stream it connected, and a process compares it with its own stdout (sd_journal_stream_fd(3), "JOURNAL_STREAM"
 * in systemd.exec(5)) — a child that inherited the variable but writes into a pipe is not under the journal.
 */
export function stdoutIsJournal(
  env: NodeJS.ProcessEnv = process.env,
  stat: () => { dev: number; ino: number } = () => fstatSync(1),
): boolean {
  const match = /^(\d+):(\d+)$/.exec(env.JOURNAL_STREAM ?? "");
  if (match === null) return false;
  try {
    const { dev, ino } = stat();
    return dev === Number(match[1]) && ino === Number(match[2]);
  } catch {
    return false;
  }
}

/** A table for a terminal: a header row, columns padded to their widest cell, the last column unpadded. */
export function renderTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i])))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)].join("\n");
}

/** A duration for people: `45 s`, `12 min`, `5.2 h`, `3.1 d`. */
export function humanDuration(seconds: number): string {
  if (seconds < 120) return `${Math.round(seconds)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86400).toFixed(1)} d`;
}

/** A size for people, in binary units: `812 B`, `3.4 MiB`, `1.21 GiB`. */
export function humanBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 2 : 1)} ${units[unit]}`;
}
