import { randomBytes } from "node:crypto";
import { access, chmod, mkdir, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { S3Client } from "@aws-sdk/client-s3";
import type { SQSClient } from "@aws-sdk/client-sqs";
import {
  backupConfig,
  statusConfig,
  restoreConfig,
  verifyConfig,
  writeBackupOptionFile,
  writeJson,
  type LabConfigInputs,
} from "./configs";
import * as dataset from "./dataset";
import {
  createResources,
  emulatorClients,
  freePort,
  readCredentialsFile,
  startEmulator,
  writeCredentialsFile,
} from "./emulator";
import { chownToMysql, installDatadir, rootQuery, startServer, type ServerSpec } from "./mariadb";
import { createMarker, startArchiver, startMarker, stopArchiver } from "./pitr";
import { isAlive, processesUsing, terminate } from "./processes";
import {
  createAccounts,
  primaryGtidPosition,
  readReplicaStatus,
  startReplication,
  waitForCatchUp,
  type ReplicaStatus,
} from "./replication";
import {
  createBtrfsVolume,
  createSubvolume,
  deleteSubvolumes,
  detachLoops,
  loopsBacking,
  mountsUnder,
  snapshotsIn,
  unmountAll,
} from "./volume";

/**
 * The lab: a MariaDB primary → replica pair with GTID replication, the replica's datadir on a btrfs
 * subvolume of a loop-file volume, sysbench data (and optional write load) on the primary, and the
 * S3/SQS emulator with the bucket and queues the pipeline uses — everything `mysql-backup backup` and
 * `verify` need on one machine, described by `<dir>/state.json` and torn down by `labDown`.
 *
 * Runs as root (loop devices, mounts, unix_socket root sessions). Servers, emulator and load are
 * detached processes that outlive the process that started them; `labDown` finds them by the lab
 * directory in their command line or working directory, so it cleans up after crashes too.
 *
 * Layout of `<dir>`:
 * - `btrfs.img` → mounted at `mnt/`; `mnt/replica` is the replica's subvolume (datadir `mnt/replica/data`),
 *   `mnt/.snapshots` is where backups put snapshots;
 * - `primary/data` the primary's datadir (plain disk); `run/` sockets and pid files; `log/` server,
 *   emulator and load logs; `secrets/` (0700) the backup option file and the AWS credentials file;
 * - `backup.json`, `verify.json`, `status.json` the host scripts' configs; `backups/`, `scratch/`, `metrics.jsonl`
 *   what they write.
 */

/** Options of `labUp`. */
export interface LabOptions {
  /** The lab directory. Defaults to `<repo>/.lab`. */
  dir?: string;
  /** Start the background write load once the lab is up. Defaults to false. */
  load?: boolean;
  /** sysbench tables. Defaults to 4. */
  tables?: number;
  /** Rows per sysbench table. Defaults to 20,000. */
  tableSize?: number;
  /** Size of the sparse btrfs image in GiB. Defaults to 4. */
  imageSizeGiB?: number;
  /**
   * Point-in-time recovery: start the binlog archiver on the replica and the marker on the primary (one row
   * per second in `lab_pitr.marker`). Defaults to false.
   */
  pitr?: boolean;
}

/** One lab server. */
export interface LabServer {
  port: number;
  socket: string;
  datadir: string;
  pid: number;
}

/** A running lab, as `state.json` holds it. */
export interface Lab {
  dir: string;
  backupConfigPath: string;
  verifyConfigPath: string;
  /** `mysql-backup status --config` of the lab (bucket, the lab cluster and its replica expected). */
  statusConfigPath: string;
  /** `mysql-backup restore --config`: the verify config with the lab cluster named. */
  restoreConfigPath: string;
  /** The binlog archiver's state and spool (config `binlog.stateDir`). */
  binlogStateDir: string;
  primary: LabServer;
  replica: LabServer & { subvolume: string };
  s3: { endpoint: string; bucket: string };
  /** Queue URLs carry the emulator's `sqs.<region>.localhost` host: clients must set `endpoint`. */
  sqs: { queueUrl: string; dlqUrl: string };
  awsCredentialsFile: string;
  metricsPath: string;
  scratchDir: string;
  backupsDir: string;
  snapshotDir: string;
  /** The backup user's option file (`[client]` user, password, replica socket). */
  backupOptionFile: string;
  /** The emulator process. */
  emulator: { port: number; pid: number };
  /** The loop-file volume. */
  volume: { image: string; loopDevice: string; mountPoint: string };
  /** The sysbench dataset, which the load uses too. */
  dataset: { tables: number; tableSize: number };
}

/** The default lab directory, `<repo>/.lab` (gitignored). */
export const DEFAULT_LAB_DIR = resolve(__dirname, "..", ".lab");

/** The lab's backup bucket in the emulator. */
export const LAB_BUCKET = "mysql-backups-lab";
/** The lab's verification queue. */
export const LAB_QUEUE = "mysql-backup-verify";
/** The verification queue's dead-letter queue. */
export const LAB_DLQ = "mysql-backup-verify-dlq";

/** Written first by `labUp`: `labDown` deletes only directories that carry it (or hold only lab files). */
const MARKER = ".mysql-backup-lab";
const LAB_ENTRIES = new Set([
  MARKER,
  "state.json",
  "btrfs.img",
  "mnt",
  "primary",
  "run",
  "log",
  "secrets",
  "backups",
  "scratch",
  "backup.json",
  "verify.json",
  "status.json",
  "restore.json",
  "binlog",
  "metrics.jsonl",
]);

function labDir(dir: string | undefined): string {
  return resolve(dir ?? DEFAULT_LAB_DIR);
}

/** Where everything of a lab lives, derived from its directory alone (what `down` relies on). */
function layout(dir: string) {
  const mnt = join(dir, "mnt");
  const subvolume = join(mnt, "replica");
  return {
    root: dir,
    marker: join(dir, MARKER),
    state: join(dir, "state.json"),
    image: join(dir, "btrfs.img"),
    mnt,
    subvolume,
    snapshotDir: join(mnt, ".snapshots"),
    replicaDatadir: join(subvolume, "data"),
    primaryDatadir: join(dir, "primary", "data"),
    run: join(dir, "run"),
    log: join(dir, "log"),
    secrets: join(dir, "secrets"),
    backups: join(dir, "backups"),
    scratch: join(dir, "scratch"),
    backupConfig: join(dir, "backup.json"),
    verifyConfig: join(dir, "verify.json"),
    statusConfig: join(dir, "status.json"),
    restoreConfig: join(dir, "restore.json"),
    binlogState: join(dir, "binlog"),
    metrics: join(dir, "metrics.jsonl"),
    backupOptionFile: join(dir, "secrets", "backup.cnf"),
    awsCredentials: join(dir, "secrets", "aws-credentials"),
  };
}

/**
 * Brings a lab up in `opts.dir` and returns it. When a healthy lab already runs there it is returned as is
 * (the load is started if asked); a broken or half-built one is torn down first. On failure, everything
 * this call made is torn down again and the error says what failed.
 */
export async function labUp(opts: LabOptions = {}): Promise<Lab> {
  const dir = labDir(opts.dir);
  const existing = await readLab(dir).catch(() => undefined);
  if (existing !== undefined && (await isHealthy(existing))) {
    if (opts.load) await startLoad(existing);
    if (opts.pitr) await startPitr(existing);
    return existing;
  }
  if (await pathExists(dir)) await labDown(dir);
  try {
    const lab = await build(dir, opts);
    if (opts.load) await startLoad(lab);
    if (opts.pitr) await startPitr(lab);
    return lab;
  } catch (error) {
    await labDown(dir).catch((cleanup: Error) => {
      console.error(`lab: cleaning up after the failed start also failed: ${cleanup.message}`);
    });
    throw error;
  }
}

type Layout = ReturnType<typeof layout>;

async function build(dir: string, opts: LabOptions): Promise<Lab> {
  const paths = layout(dir);
  const size = { tables: opts.tables ?? 4, tableSize: opts.tableSize ?? 20_000 };
  await prepareDirectories(paths);
  const [primaryPort, replicaPort, emulatorPort] = await distinctFreePorts(3);
  const emulatorStart = startEmulator(dir, emulatorPort);
  // Attach a rejection handler now: the emulator's failure is reported when awaited below.
  emulatorStart.catch(() => undefined);

  const loopDevice = await createBtrfsVolume(paths.image, paths.mnt, opts.imageSizeGiB ?? 4);
  await createSubvolume(paths.subvolume);
  await mkdir(paths.snapshotDir, { mode: 0o700 });
  const primary = serverSpec(paths, "primary", 1, primaryPort, paths.primaryDatadir);
  const replica = serverSpec(paths, "replica", 2, replicaPort, paths.replicaDatadir);
  await Promise.all([installDatadir(primary), installDatadir(replica)]);
  const [primaryPid, replicaPid] = await Promise.all([startServer(primary), startServer(replica)]);
  const passwords = { replication: secret(), backup: secret() };
  await createAccounts(primary.socket, passwords);
  await startReplication(replica.socket, primaryPort, passwords.replication);

  const emulatorPid = await emulatorStart;
  const endpoint = `http://127.0.0.1:${emulatorPort}`;
  const resources = await createEmulatorResources(paths, endpoint);

  await dataset.prepareSysbench(primary.socket, size);
  await dataset.createExtraObjects(primary.socket);
  await createMarker(primary.socket);
  // The replica applies the whole dataset after the primary loaded it: allow for big benchmark datasets.
  await waitForCatchUp(primary.socket, replica.socket, 120_000 + size.tables * size.tableSize * 0.05);
  await writeConfigs(paths, {
    replicaSocket: replica.socket,
    backupPassword: passwords.backup,
    endpoint,
    ...resources,
  });

  const lab: Lab = {
    dir,
    backupConfigPath: paths.backupConfig,
    verifyConfigPath: paths.verifyConfig,
    statusConfigPath: paths.statusConfig,
    restoreConfigPath: paths.restoreConfig,
    binlogStateDir: paths.binlogState,
    primary: { port: primaryPort, socket: primary.socket, datadir: primary.datadir, pid: primaryPid },
    replica: {
      port: replicaPort,
      socket: replica.socket,
      datadir: replica.datadir,
      pid: replicaPid,
      subvolume: paths.subvolume,
    },
    s3: { endpoint, bucket: resources.bucket },
    sqs: { queueUrl: resources.queueUrl, dlqUrl: resources.dlqUrl },
    awsCredentialsFile: paths.awsCredentials,
    metricsPath: paths.metrics,
    scratchDir: paths.scratch,
    backupsDir: paths.backups,
    snapshotDir: paths.snapshotDir,
    backupOptionFile: paths.backupOptionFile,
    emulator: { port: emulatorPort, pid: emulatorPid },
    volume: { image: paths.image, loopDevice, mountPoint: paths.mnt },
    dataset: size,
  };
  // Written last: a state.json means the lab is complete.
  await writeJson(paths.state, lab);
  return lab;
}

/** The lab dir and its plain directories, with owners and modes the servers (running as mysql) need. */
async function prepareDirectories(paths: Layout): Promise<void> {
  await mkdir(paths.root, { recursive: true });
  await writeFile(
    paths.marker,
    "a mysql-backup-pipeline lab; remove with `npm run lab -- down --dir <this dir>`\n",
  );
  // The servers must traverse the lab dir (mkdtemp makes it 0700).
  await chmod(paths.root, 0o755);
  await mkdir(paths.secrets, { mode: 0o700 });
  for (const path of [paths.run, paths.log, paths.scratch]) {
    await mkdir(path, { mode: 0o755 });
    await chownToMysql(path);
  }
  await mkdir(paths.backups);
  await mkdir(paths.primaryDatadir, { recursive: true });
}

function serverSpec(
  paths: Layout,
  name: string,
  serverId: number,
  port: number,
  datadir: string,
): ServerSpec {
  return {
    name,
    serverId,
    port,
    datadir,
    socket: join(paths.run, `${name}.sock`),
    pidFile: join(paths.run, `${name}.pid`),
    errorLog: join(paths.log, `${name}.err`),
    binlogBasename: join(datadir, "mysql-bin"),
    replica: name === "replica",
    tmpdir: join(paths.run, `${name}.tmp`),
    labDir: paths.root,
  };
}

/** Writes the fake AWS credentials and creates the bucket and queues with them. */
async function createEmulatorResources(paths: Layout, endpoint: string) {
  await writeCredentialsFile(paths.awsCredentials);
  const clients = emulatorClients(endpoint, () => readCredentialsFile(paths.awsCredentials));
  try {
    return await createResources(clients, {
      bucket: LAB_BUCKET,
      queue: LAB_QUEUE,
      dlq: LAB_DLQ,
      visibilityTimeoutSeconds: 120,
      maxReceiveCount: 3,
    });
  } finally {
    clients.s3.destroy();
    clients.sqs.destroy();
  }
}

/** Writes the backup user's option file and the host scripts' configs. */
async function writeConfigs(
  paths: Layout,
  server: {
    replicaSocket: string;
    backupPassword: string;
    endpoint: string;
    bucket: string;
    queueUrl: string;
  },
): Promise<void> {
  const inputs: LabConfigInputs = {
    ...server,
    backupOptionFile: paths.backupOptionFile,
    subvolume: paths.subvolume,
    snapshotDir: paths.snapshotDir,
    backupsDir: paths.backups,
    scratchDir: paths.scratch,
    awsCredentialsFile: paths.awsCredentials,
    metricsPath: paths.metrics,
    binlogStateDir: paths.binlogState,
  };
  await writeBackupOptionFile(inputs);
  await writeJson(paths.backupConfig, backupConfig(inputs));
  await writeJson(paths.verifyConfig, verifyConfig(inputs));
  await writeJson(paths.statusConfig, statusConfig(inputs));
  await writeJson(paths.restoreConfig, restoreConfig(inputs));
}

/** A random password for a lab account (hex: safe in option files and SQL literals). */
function secret(): string {
  return randomBytes(18).toString("hex");
}

async function distinctFreePorts(count: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < count) ports.add(await freePort());
  return [...ports];
}

async function pathExists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

/** The servers and the emulator of the lab still run. */
async function isHealthy(lab: Lab): Promise<boolean> {
  const alive = await Promise.all([lab.primary.pid, lab.replica.pid, lab.emulator.pid].map(isAlive));
  if (alive.includes(false)) return false;
  return fetch(`${lab.s3.endpoint}/health`).then(
    (response) => response.ok,
    () => false,
  );
}

/** Reads `<dir>/state.json` (default dir: `<repo>/.lab`); fails clearly when no complete lab is there. */
export async function readLab(dir?: string): Promise<Lab> {
  const path = layout(labDir(dir)).state;
  const text = await readFile(path, "utf8").catch(() => {
    throw new Error(`no lab in ${labDir(dir)} (${path} is missing); start one with \`npm run lab -- up\``);
  });
  try {
    return JSON.parse(text) as Lab;
  } catch (error) {
    throw new Error(
      `${path} is not valid JSON (${(error as Error).message}); run \`npm run lab -- down\` and up again`,
      { cause: error },
    );
  }
}

/**
 * Removes everything of the lab in `dir`, also after a crash and without state.json: the load, the
 * servers (and the verifier's scratch servers), the emulator, snapshots, mounts, loop devices, the
 * directory. Fails, listing what is left, when something could not be removed.
 */
export async function labDown(dir?: string): Promise<void> {
  const root = labDir(dir);
  const paths = layout(root);
  // The load and the archiver first (while the emulator still takes its last upload), so the servers shut
  // down without clients.
  await dataset.stopLoad(root);
  await stopArchiver(root);
  const processes = await processesUsing(root);
  const stubborn = await terminate(
    processes.map((p) => p.pid),
    30_000,
  );
  if (stubborn.length > 0) throw new Error(`lab down: processes ${stubborn.join(", ")} survived SIGKILL`);
  if ((await mountsUnder(root)).includes(paths.mnt)) {
    await deleteSubvolumes(await snapshotsIn(paths.snapshotDir));
  }
  await unmountAll(root);
  await detachLoops(root);
  await removeLabDir(root);
  const left = await leftovers(root);
  const remaining = Object.entries(left).filter(([, items]) => items.length > 0);
  if (remaining.length > 0) {
    throw new Error(
      `lab down left things behind in ${root}: ` +
        remaining.map(([kind, items]) => `${kind}: ${items.join(", ")}`).join("; ") +
        ". Remove them by hand (umount -l, losetup -d, kill) and run down again.",
    );
  }
}

async function removeLabDir(root: string): Promise<void> {
  const entries = await readdir(root).catch(() => undefined);
  if (entries === undefined) return;
  const foreign = entries.filter((entry) => !LAB_ENTRIES.has(entry));
  if (!entries.includes(MARKER) && foreign.length > 0) {
    throw new Error(
      `lab down: refusing to delete ${root}: it holds ${foreign.slice(0, 5).join(", ")}, which no lab makes. ` +
        "Processes, mounts and loop devices of a lab there are gone; delete the directory yourself if it is yours to delete.",
    );
  }
  await rm(root, { recursive: true, force: true, maxRetries: 3 });
}

/** Leftovers of a lab dir: mounts, loop devices, processes, snapshots, scratch dirs. Empty arrays = clean. */
export async function leftovers(dir: string): Promise<{
  mounts: string[];
  loops: string[];
  processes: string[];
  snapshots: string[];
  scratch: string[];
}> {
  const root = labDir(dir);
  const paths = layout(root);
  const processes = await processesUsing(root);
  return {
    mounts: await mountsUnder(root),
    loops: await loopsBacking(root),
    processes: processes.map((p) => `${p.pid} ${p.command}`),
    snapshots: await snapshotsIn(paths.snapshotDir),
    scratch: (await readdir(paths.scratch).catch(() => [] as string[])).map((entry) =>
      join(paths.scratch, entry),
    ),
  };
}

/** Starts the background write load on the primary (sysbench oltp_write_only at a bounded rate). */
export async function startLoad(lab: Lab, opts: dataset.LoadOptions = {}): Promise<void> {
  await dataset.startLoad(lab.dir, lab.primary.socket, lab.dataset, opts);
}

/** Starts point-in-time recovery in a running lab: the marker on the primary, the archiver on the replica. */
export async function startPitr(lab: Lab): Promise<void> {
  await startMarker(lab.primary.socket);
  await startArchiver(lab.dir, lab.backupConfigPath);
}

/** Stops the background write load. */
export async function stopLoad(lab: Lab): Promise<void> {
  await dataset.stopLoad(lab.dir);
}

/** Runs SQL as root over the unix socket; returns rows. */
export async function sql(
  lab: Lab,
  server: "primary" | "replica",
  query: string,
  values: unknown[] = [],
): Promise<Record<string, unknown>[]> {
  return rootQuery(lab[server].socket, query, values);
}

/** Waits until the replica has applied what the primary had logged when called. Defaults to 120 s. */
export async function waitForReplicaCatchUp(lab: Lab, timeoutMs = 120_000): Promise<void> {
  await waitForCatchUp(lab.primary.socket, lab.replica.socket, timeoutMs);
}

/** The replica's threads, GTID position, lag and last error. */
export async function replicaStatus(lab: Lab): Promise<ReplicaStatus> {
  return readReplicaStatus(lab.replica.socket);
}

/** The primary's `@@gtid_binlog_pos`. */
export async function primaryGtid(lab: Lab): Promise<string> {
  return primaryGtidPosition(lab.primary.socket);
}

/** S3/SQS clients for tests, pointed at the emulator. */
export function labAwsClients(lab: Lab): { s3: S3Client; sqs: SQSClient } {
  // A provider: the SDK reads the file on first use, so this stays synchronous.
  return emulatorClients(lab.s3.endpoint, () => readCredentialsFile(lab.awsCredentialsFile));
}
