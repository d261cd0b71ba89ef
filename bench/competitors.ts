import { mkdir, rm, stat, readdir } from "node:fs/promises";
import { join } from "node:path";
import { EXTRAS_SCHEMA } from "../lab/dataset";
import { mustRunMeasured, type CommandRun } from "./measure";
import {
  initializeDatadir,
  removeScratch,
  scratchServer,
  scratchServerArgs,
  startScratch,
  type ScratchServer,
} from "./scratch";

/**
 * What users would pick instead of this pipeline, each run as its documentation suggests for a
 * consistent backup of a replica with its position, against the lab replica as root over its socket
 * (unix_socket authentication: no password anywhere). Compression is zstd -1 on all threads wherever
 * the tool lets us choose, like our archive, so the comparison is about the method, not the codec.
 */

/** The competitors, in the order they run. */
export const COMPETITORS = ["mysqldump", "mydumper", "mariabackup"] as const;
/** One competitor. */
export type CompetitorName = (typeof COMPETITORS)[number];

/** Where a competitor works. */
export interface CompetitorPaths {
  /** The replica's socket, to back up from. */
  replicaSocket: string;
  /** A directory of the bench's own, inside the lab dir. */
  work: string;
}

/** Schemas the logical tools dump: the lab's data (the system schema is the server's, not the data). */
const DATA_SCHEMAS = ["sbtest", EXTRAS_SCHEMA];

/** The backup artifact of a competitor: a file or a directory under `work`. */
export function artifactPath(name: CompetitorName, work: string): string {
  switch (name) {
    case "mysqldump":
      return join(work, "mysqldump.sql.zst");
    case "mydumper":
      return join(work, "mydumper");
    case "mariabackup":
      return join(work, "mariabackup.xbstream.zst");
  }
}

/** The exact backup command of a competitor. */
export function backupCommand(name: CompetitorName, paths: CompetitorPaths): string {
  const out = artifactPath(name, paths.work);
  const socket = paths.replicaSocket;
  switch (name) {
    case "mysqldump":
      // --master-data=2 records the position (a short FTWRL at the start), as one would on a replica.
      return (
        `mariadb-dump --socket=${socket} --user=root --single-transaction --master-data=2 --gtid ` +
        `--routines --events --triggers --databases ${DATA_SCHEMAS.join(" ")} | zstd -T0 -1 -q -f -o ${out}`
      );
    case "mydumper":
      // mydumper 0.10 compresses with gzip only (--compress); defaults otherwise, as users run it.
      return (
        `mydumper --socket ${socket} --user root --threads 2 --compress --routines --events --triggers ` +
        `--regex '^(${DATA_SCHEMAS.join("|")})\\.' --outputdir ${out}`
      );
    case "mariabackup":
      return (
        `mariabackup --backup --user=root --socket=${socket} --slave-info --parallel=2 --stream=xbstream ` +
        `--target-dir=${join(paths.work, "mariabackup-tmp")} 2>${join(paths.work, "mariabackup.log")} ` +
        `| zstd -T0 -1 -q -f -o ${out}`
      );
  }
}

/** Prepares `work` for a competitor's backup (removes a previous artifact). */
export async function prepareBackup(name: CompetitorName, work: string): Promise<void> {
  await rm(artifactPath(name, work), { recursive: true, force: true });
  await mkdir(join(work, "mariabackup-tmp"), { recursive: true });
}

/** Bytes of a backup artifact (a file, or all files of a directory). */
export async function artifactBytes(path: string): Promise<number> {
  const info = await stat(path);
  if (!info.isDirectory()) return info.size;
  let total = 0;
  for (const entry of await readdir(path)) total += await artifactBytes(join(path, entry));
  return total;
}

/** One timed step of a restore. */
export interface RestoreStep {
  step: string;
  run: CommandRun | { command: string; wallSeconds: number };
}

/** A competitor's restore to a queryable server. */
export interface CompetitorRestore {
  name: CompetitorName;
  steps: RestoreStep[];
  /** Every step: from the local backup to a server that answers queries. */
  totalSeconds: number;
  /** Only the data load (the logical tools; a server already running), or prepare + copy-back + start. */
  loadSeconds: number;
  /** Rows in the sbtest tables of the restored server (checked after the clock stopped). */
  rowsRestored: number;
}

/**
 * Restores a competitor's backup into a fresh scratch server under `work` and stops and removes the
 * server afterwards, also on failure. `countRows` runs after the clock stopped, to prove the restore.
 */
export async function restoreCompetitor(
  name: CompetitorName,
  work: string,
  countRows: (socket: string) => Promise<number>,
): Promise<CompetitorRestore> {
  const server = await scratchServer(work, `restore-${name}`);
  try {
    const steps =
      name === "mariabackup" ? await restorePhysical(server, work) : await restoreLogical(name, server, work);
    const seconds = (filter: (s: RestoreStep) => boolean) =>
      steps.filter(filter).reduce((sum, s) => sum + s.run.wallSeconds, 0);
    return {
      name,
      steps,
      totalSeconds: seconds(() => true),
      loadSeconds: seconds((s) => name === "mariabackup" || s.step === "load"),
      rowsRestored: await countRows(server.socket),
    };
  } finally {
    await removeScratch(server);
  }
}

async function restoreLogical(
  name: CompetitorName,
  server: ScratchServer,
  work: string,
): Promise<RestoreStep[]> {
  const initialize = await timed(
    `mariadb-install-db --datadir=${server.datadir} (as lab/mariadb.ts installDatadir)`,
    () => initializeDatadir(server),
  );
  const start = await timed(`mariadbd ${scratchServerArgs(server).join(" ")}`, () => startScratch(server));
  const artifact = artifactPath(name, work);
  const load =
    name === "mysqldump"
      ? `zstd -dc ${artifact} | mariadb --socket=${server.socket} --user=root`
      : `myloader --socket ${server.socket} --user root --threads 2 --overwrite-tables --directory ${artifact}`;
  return [
    { step: "initialize", run: initialize },
    { step: "start", run: start },
    { step: "load", run: await mustRunMeasured(`${name} restore`, load) },
  ];
}

async function restorePhysical(server: ScratchServer, work: string): Promise<RestoreStep[]> {
  const target = join(work, "mariabackup-restore");
  await rm(target, { recursive: true, force: true });
  await mkdir(target, { recursive: true });
  const extract = await mustRunMeasured(
    "mariabackup restore: extract",
    `zstd -dc ${artifactPath("mariabackup", work)} | mbstream -x -C ${target}`,
  );
  const prepare = await mustRunMeasured(
    "mariabackup restore: prepare",
    `mariabackup --prepare --target-dir=${target} 2>${join(work, "mariabackup-prepare.log")}`,
  );
  const copyBack = await mustRunMeasured(
    "mariabackup restore: copy-back",
    `mariabackup --copy-back --target-dir=${target} --datadir=${server.datadir} ` +
      `2>${join(work, "mariabackup-copy-back.log")} && chown -R mysql:mysql ${server.datadir}`,
  );
  const start = await timed(`mariadbd ${scratchServerArgs(server).join(" ")}`, () => startScratch(server));
  await rm(target, { recursive: true, force: true });
  return [
    { step: "extract", run: extract },
    { step: "prepare", run: prepare },
    { step: "copy-back", run: copyBack },
    { step: "start", run: start },
  ];
}

async function timed(command: string, action: () => Promise<void>) {
  const started = performance.now();
  await action();
  return { command, wallSeconds: (performance.now() - started) / 1000 };
}
