import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import type { BinlogSegmentEntry } from "../contracts";
import { listArchive, readArchive } from "../hostscripts/restore/archive";
import { LAB_RPO_SECONDS } from "./configs";
import { freePort } from "./emulator";
import { labAwsClients, type Lab } from "./lab";
import { chownToMysql, rootQuery, startServer } from "./mariadb";
import { markerRows } from "./pitr";
import { terminate, waitUntil } from "./processes";

/**
 * The point-in-time part of `npm run demo`: what the binlog archiver kept off site while the demo ran (its
 * RPO lag per segment), and a restore to a second between two snapshots, checked on the restored server:
 * its newest marker row against the second asked for.
 */

/** The archive's segments so far. */
export async function archivedSegments(lab: Lab): Promise<BinlogSegmentEntry[]> {
  const { s3 } = labAwsClients(lab);
  try {
    const epochs = await readArchive(
      s3,
      lab.s3.bucket,
      await listArchive(s3, lab.s3.bucket, "backups", "lab"),
    );
    return epochs.flatMap((e) => e.entries);
  } finally {
    s3.destroy();
  }
}

/** The RPO lag of each segment: from its first transaction's commit to its ledger entry in S3, in seconds. */
export function segmentLags(segments: BinlogSegmentEntry[], sinceMs: number): number[] {
  return segments
    .filter(
      (e) => e.transactions.firstCommitAt !== null && Date.parse(e.transactions.firstCommitAt) >= sinceMs,
    )
    .map((e) => (Date.parse(e.archivedAt) - Date.parse(e.transactions.firstCommitAt!)) / 1000);
}

/** A point between two instants: half a second after the marker row committed halfway between them. */
export async function pointBetween(
  lab: Lab,
  fromMs: number,
  toMs: number,
): Promise<{ atMs: number; markerId: number }> {
  const markers = (await markerRows(lab.primary.socket)).filter(
    (m) => m.at > fromMs + 2000 && m.at < toMs - 2000,
  );
  const marker = markers[Math.floor(markers.length / 2)];
  if (marker === undefined) throw new Error("demo: no marker row between the two snapshots");
  return { atMs: marker.at + 500, markerId: marker.id };
}

/** Waits until the archive holds a transaction committed after `afterMs`. */
export async function waitForArchive(lab: Lab, afterMs: number): Promise<void> {
  const reached = await waitUntil(
    async () =>
      (await archivedSegments(lab)).some((e) => Date.parse(e.transactions.lastCommitAt ?? "") > afterMs),
    120_000,
    1000,
  );
  if (!reached)
    throw new Error(`demo: the archive did not reach ${new Date(afterMs).toISOString()} in 2 minutes`);
}

/** Starts a server on the restored datadir and reads its newest marker row and GTID; stops it again. */
export async function inspectRestored(
  lab: Lab,
  datadir: string,
): Promise<{ markerId: number; markerAt: number; gtid: string }> {
  const name = "demo-restored";
  const tmpdir = join(lab.dir, "run", `${name}.tmp`);
  await mkdir(tmpdir, { recursive: true });
  await chownToMysql(tmpdir);
  const spec = {
    name,
    serverId: 3,
    port: await freePort(),
    datadir,
    socket: join(lab.dir, "run", `${name}.sock`),
    pidFile: join(lab.dir, "run", `${name}.pid`),
    errorLog: join(lab.dir, "log", `${name}.err`),
    binlogBasename: join(datadir, "mysql-bin"),
    replica: true,
    tmpdir,
    labDir: lab.dir,
  };
  const pid = await startServer(spec);
  try {
    const [newest] = await markerRows(spec.socket, true);
    const [row] = await rootQuery(spec.socket, "SELECT @@gtid_binlog_pos AS gtid");
    return { markerId: newest.id, markerAt: newest.at, gtid: String(row.gtid) };
  } finally {
    await terminate([pid], 60_000);
  }
}

/** What the demo's point-in-time part shows. */
export interface PitrDemoSummary {
  rpoSeconds: number;
  /** Segments archived while the demo ran, and their lag (s): median and worst. */
  lag: { segments: number; p50: number; max: number };
  until: string;
  snapshots: { before: string; after: string };
  restoredFrom: string;
  reachedGtid: string;
  transactions: number;
  replaySeconds: number;
  /** The restored server's newest marker row and how far it is from the point asked for. */
  newestMarkerAt: string;
  markerToPointSeconds: number;
  markerIsTheExpectedOne: boolean;
}

/** Runs `mysql-backup <args> --json`; the demo's runner. */
export type CliRunner = (args: string[]) => Promise<{ code: number; result: Record<string, unknown> }>;

/**
 * Takes the second snapshot after a while of load, restores to a second between the two, and reads the
 * restored server's newest marker; `first` is the first snapshot (verified) and when it was complete.
 */
export async function pitrDemo(
  lab: Lab,
  first: { backupId: string; doneMs: number },
  runCli: CliRunner,
  say: (line: string) => void,
  startedMs: number,
): Promise<PitrDemoSummary> {
  say("letting the load run 12 s, then the second snapshot …");
  await new Promise((r) => setTimeout(r, 12_000));
  const second = await runCli(["backup", "--config", lab.backupConfigPath]);
  if (second.code !== 0)
    throw new Error(`demo: the second backup failed: ${String(second.result.message ?? "")}`);
  const point = await pointBetween(lab, first.doneMs, Date.now());
  const until = new Date(point.atMs).toISOString();
  await waitForArchive(lab, point.atMs + 2000);
  say(`mysql-backup restore --until ${until} (a second between the two snapshots) …`);
  const target = join(lab.dir, "demo-pitr");
  const restored = await runCli([
    "restore",
    "--config",
    lab.restoreConfigPath,
    "--target",
    target,
    "--until",
    until,
  ]);
  if (restored.code !== 0)
    throw new Error(`demo: the point-in-time restore failed: ${String(restored.result.message ?? "")}`);
  const pitr = restored.result.pitr as { reachedGtid: string; transactions: number; replaySeconds: number };
  const inspected = await inspectRestored(lab, String(restored.result.datadir));
  const lags = segmentLags(await archivedSegments(lab), startedMs).sort((a, b) => a - b);
  return {
    rpoSeconds: LAB_RPO_SECONDS,
    lag: {
      segments: lags.length,
      p50: lags[Math.floor(lags.length / 2)] ?? 0,
      max: lags.at(-1) ?? 0,
    },
    until,
    snapshots: { before: first.backupId, after: String(second.result.backupId) },
    restoredFrom: String(restored.result.backupId),
    reachedGtid: pitr.reachedGtid,
    transactions: pitr.transactions,
    replaySeconds: pitr.replaySeconds,
    newestMarkerAt: new Date(inspected.markerAt).toISOString(),
    markerToPointSeconds: Math.round((point.atMs - inspected.markerAt) / 10) / 100,
    markerIsTheExpectedOne: inspected.markerId === point.markerId && inspected.gtid === pitr.reachedGtid,
  };
}

/** The demo's lines about it. */
export function describePitrDemo(p: PitrDemoSummary): string[] {
  return [
    `point-in-time recovery — ${p.markerIsTheExpectedOne ? "EXACT" : "NOT AT THE POINT"}`,
    `  binlog archive   ${p.lag.segments} segments while the demo ran; RPO lag median ${p.lag.p50.toFixed(1)} s, worst ${p.lag.max.toFixed(1)} s (RPO ${p.rpoSeconds} s, replication delay included)`,
    `  restore --until  ${p.until}, between snapshots ${p.snapshots.before} and ${p.snapshots.after}`,
    `                   from ${p.restoredFrom}: ${p.transactions} transactions replayed in ${p.replaySeconds.toFixed(2)} s, GTID ${p.reachedGtid}`,
    `  newest marker    ${p.newestMarkerAt} (${p.markerToPointSeconds.toFixed(2)} s before the point)`,
    "",
  ];
}
