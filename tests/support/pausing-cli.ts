/**
 * The CLI for the crash tests: `mysql-backup` that stops a backup at one point, so a test can `kill -9` it in
 * a known state. Run it the way bin/mysql-backup.js runs the CLI, through tsx:
 *
 *   MYSQL_BACKUP_PAUSE_AT=<point> MYSQL_BACKUP_PAUSE_MARKER=<file> \
 *     node --require tsx/cjs tests/support/pausing-cli.ts backup --config FILE
 *
 * `<point>` is a pause point (the checkpoint waits there: whatever else is in flight goes on), or `line:<n>`:
 * the process freezes at once after writing its n-th log line, as a kill between that line and the next
 * statement would find it. At that point the CLI writes `<point> <pid>` (and the log line) to the marker
 * file and stays there until it is killed.
 */
import { writeFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { main } from "../../hostscripts/cli";
import {
  BINLOG_PAUSE_POINTS,
  PAUSE_POINTS,
  type Checkpoint,
  type PausePoint,
} from "../../hostscripts/common/checkpoint";

/** At `point`: writes the marker, then never returns. At every other point: returns at once. */
function pausingAt(point: PausePoint, marker: string): Checkpoint {
  return async (reached) => {
    if (reached !== point) return;
    await writeFile(marker, `${point} ${process.pid}\n`);
    await new Promise<never>(() => setInterval(() => undefined, 60_000));
  };
}

/**
 * Freezes the whole process right after its `n`-th JSON log line on stderr: the marker is written
 * synchronously, then the thread blocks for good, so nothing after that line runs.
 */
function freezeAfterLine(n: number, marker: string): void {
  const write = process.stderr.write.bind(process.stderr);
  let lines = 0;
  process.stderr.write = ((chunk: string | Uint8Array, ...rest: never[]) => {
    const written = write(chunk, ...rest);
    const text = typeof chunk === "string" ? chunk : Buffer.from(chunk).toString("utf8");
    if (text.startsWith('{"time"') && ++lines === n) {
      writeFileSync(marker, `line:${n} ${process.pid}\n${text}`);
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
    }
    return written;
  }) as typeof process.stderr.write;
}

/** The pause this process was started with. */
function pauseFrom(env: NodeJS.ProcessEnv): { point: PausePoint | number; marker: string } {
  const line = /^line:(\d+)$/.exec(env.MYSQL_BACKUP_PAUSE_AT ?? "");
  const point = line
    ? Number(line[1])
    : [...PAUSE_POINTS, ...BINLOG_PAUSE_POINTS].find((p) => p === env.MYSQL_BACKUP_PAUSE_AT);
  const marker = env.MYSQL_BACKUP_PAUSE_MARKER;
  if (!point || !marker)
    throw new Error(
      `pausing-cli needs MYSQL_BACKUP_PAUSE_AT (line:<n> or one of ${[...PAUSE_POINTS, ...BINLOG_PAUSE_POINTS].join(", ")}) and MYSQL_BACKUP_PAUSE_MARKER (a file)`,
    );
  return { point, marker };
}

const { point, marker } = pauseFrom(process.env);
if (typeof point === "number") freezeAfterLine(point, marker);
const checkpoint: Checkpoint = typeof point === "number" ? () => Promise.resolve() : pausingAt(point, marker);
main(process.argv.slice(2), { checkpoint }).then((code) => process.exit(code));
