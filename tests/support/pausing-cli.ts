/**
 * The CLI for the crash tests: `mysql-backup` with a checkpoint that stops a backup at one pause point, so a
 * test can `kill -9` it in a known state. Run it the way bin/mysql-backup.js runs the CLI, through tsx:
 *
 *   MYSQL_BACKUP_PAUSE_AT=<point> MYSQL_BACKUP_PAUSE_MARKER=<file> \
 *     node --require tsx/cjs tests/support/pausing-cli.ts backup --config FILE
 *
 * At that point the backup writes `<point> <pid>` to the marker file and waits there until it is killed.
 */
import { writeFile } from "node:fs/promises";
import { main } from "../../hostscripts/cli";
import { PAUSE_POINTS, type Checkpoint, type PausePoint } from "../../hostscripts/common/checkpoint";

/** At `point`: writes the marker, then never returns. At every other point: returns at once. */
function pausingAt(point: PausePoint, marker: string): Checkpoint {
  return async (reached) => {
    if (reached !== point) return;
    await writeFile(marker, `${point} ${process.pid}\n`);
    await new Promise<never>(() => setInterval(() => undefined, 60_000));
  };
}

/** The pause point and marker file this process was started with. */
function pauseFrom(env: NodeJS.ProcessEnv): { point: PausePoint; marker: string } {
  const point = PAUSE_POINTS.find((p) => p === env.MYSQL_BACKUP_PAUSE_AT);
  const marker = env.MYSQL_BACKUP_PAUSE_MARKER;
  if (!point || !marker)
    throw new Error(
      `pausing-cli needs MYSQL_BACKUP_PAUSE_AT (one of ${PAUSE_POINTS.join(", ")}) and MYSQL_BACKUP_PAUSE_MARKER (a file)`,
    );
  return { point, marker };
}

const { point, marker } = pauseFrom(process.env);
main(process.argv.slice(2), { checkpoint: pausingAt(point, marker) }).then((code) => process.exit(code));
