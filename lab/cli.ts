import { parseArgs } from "node:util";
import { archiverPid } from "./pitr";
import {
  DEFAULT_LAB_DIR,
  labDown,
  labUp,
  leftovers,
  primaryGtid,
  readLab,
  replicaStatus,
  type LabOptions,
} from "./lab";

/**
 * `npm run lab -- up [--load] [--dir DIR] [--tables N] [--table-size ROWS] [--image-size GIB]`
 * `npm run lab -- down [--dir DIR]`
 * `npm run lab -- status [--dir DIR]`
 */

const USAGE = `usage: npm run lab -- <up|down|status> [options]
  up      create the lab (btrfs loop volume, MariaDB primary -> replica, sysbench data, S3/SQS emulator)
            --load              also start a background write load on the primary
            --pitr              also start the binlog archiver and the marker table (one row per second)
            --tables N          sysbench tables (default 4)
            --table-size ROWS   rows per table (default 20000)
            --image-size GIB    size of the sparse btrfs image (default 4)
  down    stop and remove everything of the lab, also after a crash
  status  show the lab's servers, replication and leftovers
  --dir DIR   the lab directory (default ${DEFAULT_LAB_DIR})`;

async function main(argv: string[]): Promise<number> {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      dir: { type: "string" },
      load: { type: "boolean", default: false },
      pitr: { type: "boolean", default: false },
      tables: { type: "string" },
      "table-size": { type: "string" },
      "image-size": { type: "string" },
      help: { type: "boolean", default: false },
    },
  });
  const command = positionals[0];
  if (values.help || command === undefined || positionals.length > 1) {
    console.log(USAGE);
    return values.help ? 0 : 2;
  }
  switch (command) {
    case "up":
      return up({
        dir: values.dir,
        load: values.load,
        pitr: values.pitr,
        tables: positiveInteger("--tables", values.tables),
        tableSize: positiveInteger("--table-size", values["table-size"]),
        imageSizeGiB: positiveInteger("--image-size", values["image-size"]),
      });
    case "down":
      await labDown(values.dir);
      console.log(`lab in ${values.dir ?? DEFAULT_LAB_DIR} removed`);
      return 0;
    case "status":
      return status(values.dir);
    default:
      console.error(`unknown command "${command}"\n${USAGE}`);
      return 2;
  }
}

function positiveInteger(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const number = Number(value);
  if (!Number.isInteger(number) || number <= 0)
    throw new Error(`${flag} must be a positive integer, got "${value}"`);
  return number;
}

async function up(opts: LabOptions): Promise<number> {
  const started = Date.now();
  // The servers are detached and outlive an interrupted `up`; say how to remove them.
  process.once("SIGINT", () => {
    console.error(
      `\nlab: interrupted; remove what was made with: npm run lab -- down --dir ${opts.dir ?? DEFAULT_LAB_DIR}`,
    );
    process.exit(130);
  });
  const lab = await labUp(opts);
  console.log(`lab up in ${((Date.now() - started) / 1000).toFixed(1)} s: ${lab.dir}
  primary   127.0.0.1:${lab.primary.port}  socket ${lab.primary.socket}
  replica   127.0.0.1:${lab.replica.port}  socket ${lab.replica.socket}  subvolume ${lab.replica.subvolume}
  s3/sqs    ${lab.s3.endpoint}  bucket ${lab.s3.bucket}  queue ${lab.sqs.queueUrl}
  configs   ${lab.backupConfigPath}  ${lab.verifyConfigPath}  ${lab.restoreConfigPath}
  sql       mariadb --socket=${lab.primary.socket}   (root, unix_socket auth)
  down      npm run lab -- down${opts.dir === undefined ? "" : ` --dir ${lab.dir}`}`);
  return 0;
}

async function status(dir: string | undefined): Promise<number> {
  const lab = await readLab(dir).catch((error: Error) => {
    console.log(error.message);
    return undefined;
  });
  if (lab !== undefined) {
    const replica = await replicaStatus(lab).catch((error: Error) => error);
    const primary = await primaryGtid(lab).catch((error: Error) => error);
    console.log(`lab ${lab.dir}`);
    console.log(
      `  primary gtid_binlog_pos: ${primary instanceof Error ? `unreachable (${primary.message})` : primary}`,
    );
    console.log(
      replica instanceof Error
        ? `  replica unreachable (${replica.message})`
        : `  replica io=${replica.ioRunning} sql=${replica.sqlRunning} gtid_slave_pos=${replica.gtidSlavePos} ` +
            `behind=${replica.secondsBehind ?? "?"}s${replica.lastError ? ` error: ${replica.lastError}` : ""}`,
    );
    const archiver = await archiverPid(lab.dir);
    console.log(
      `  binlog archiver: ${archiver === undefined ? "not running" : `pid ${archiver}, log ${lab.dir}/log/binlog.log`}`,
    );
  }
  const left = await leftovers(dir ?? DEFAULT_LAB_DIR);
  for (const [kind, items] of Object.entries(left)) {
    console.log(`  ${kind}: ${items.length === 0 ? "-" : ""}`);
    // Command lines of servers run to a thousand characters; the start names the process well enough.
    for (const item of items) console.log(`    ${item.length > 150 ? `${item.slice(0, 150)}…` : item}`);
  }
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: Error) => {
    console.error(`lab: ${error.message}`);
    process.exit(1);
  },
);
