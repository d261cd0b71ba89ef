import * as aws from "@pulumi/aws";
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import {
  parseBackupConfig,
  schemaFor,
  type BackupConfig,
  type BinlogArchiveConfig,
  type SnapshotConfig,
} from "../contracts";
import {
  BACKUP_CONFIG_PATH,
  BACKUP_SERVICE,
  BACKUP_TIMER,
  BINLOG_SERVICE,
  BINLOG_STATE_DIR,
  backupServiceUnit,
  backupTimerUnit,
  binlogServiceUnit,
  CONFIG_DIR,
  INSTALLED_BINARY,
} from "../contracts/units";
import { replicaRolePolicy } from "./hostPolicies";
import { ec2AssumeRolePolicy } from "./iam";
import { physicalName } from "./names";
import { resolvePitr, type PitrSpec } from "./pitr";
import { installHash, installScript, stageDir, stageScript, uninstallScript } from "./replicaInstall";

/** An SSH endpoint with its pinned host key. */
export interface SshEndpoint {
  /** DNS name or IP address to connect to. */
  address: string;
  /** Defaults to 22. */
  port?: number;
  /** The login user; commands run through `sudo -n` unless it is root. */
  user: string;
  /** The host's public key (`ssh-ed25519 AAAA…`); the connection fails if the host presents another. */
  hostKey: string;
}

/** {@link SshEndpoint} as JSON (the stack config's replicas and bastions), with its bounds. */
export const sshEndpointSchema = schemaFor<SshEndpoint>()({
  type: "object",
  additionalProperties: false,
  required: ["address", "user", "hostKey"],
  properties: {
    address: { type: "string", minLength: 1 },
    port: { type: "integer", minimum: 1, maximum: 65535 },
    user: { type: "string", pattern: "^[a-z_][a-z0-9_-]*$" },
    // A pinned public key: `<type> <base64>` as in known_hosts (without the host name).
    hostKey: {
      type: "string",
      pattern: "^(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa) [A-Za-z0-9+/]+=*$",
    },
  },
});

/** The bundled host scripts (see scripts/bundle.ts). */
export interface HostBundle {
  path: string;
  sha256: string;
}

/** The bucket and queue every host of the pipeline works against. */
export interface PipelineEndpoints {
  /** The backup bucket. */
  bucketName: pulumi.Input<string>;
  /** Its ARN, which the role policies scope. */
  bucketArn: pulumi.Input<string>;
  /** ARN of its KMS key. */
  keyArn: pulumi.Input<string>;
  /** Key prefix above `<cluster>/`. */
  prefix: string;
  /** URL of the verification queue. */
  queueUrl: pulumi.Input<string>;
  /** Its ARN, which the role policies scope. */
  queueArn: pulumi.Input<string>;
  /** The AWS region of the bucket and queue. */
  region: pulumi.Input<string>;
}

/** Arguments of {@link ReplicaAgent}. */
export interface ReplicaAgentArgs extends PipelineEndpoints {
  /** The cluster the replica belongs to (a key segment and metric dimension). */
  cluster: string;
  /** The replica's name (a key segment and metric dimension). */
  host: string;
  /** How to reach the replica. */
  ssh: SshEndpoint;
  /** The private key for the replica (and the bastion); kept secret. */
  privateKey: pulumi.Input<string>;
  /** A bastion the connection goes through. Defaults to a direct connection. */
  bastion?: SshEndpoint;
  /** How the replica snapshots its datadir. */
  snapshot: SnapshotConfig;
  /**
   * systemd OnCalendar expression of the backup timer (check one with `systemd-analyze calendar`).
   * Defaults to "*-*-* 02:00:00 UTC".
   */
  schedule?: string;
  /** RandomizedDelaySec of the timer. Defaults to "0". */
  randomizedDelaySec?: string;
  /** The MySQL option file with the backup user's credentials (mode 0600, managed outside Pulumi). Defaults to "/etc/mysql-backup/client.cnf". */
  mysqlOptionFile?: string;
  /** Where archives are written before upload. Defaults to "/var/backups/mysql". */
  localDir?: string;
  /** Hard limit of the lock window. Defaults to the host script's default (5000 ms). */
  lockTimeoutMs?: number;
  /**
   * How the backup holds the server while it snapshots (`none`, `commit`, `global`; docs/lock-modes.md).
   * Defaults to "auto": the host picks the least blocking mode the server proves safe.
   */
  lockMode?: BackupConfig["lockMode"];
  /** Local archives kept on the replica. Defaults to the host script's default (2). */
  keepLocal?: number;
  /**
   * Point-in-time recovery: the binlog archiver (service mysql-backup-binlog) runs on the replica with this
   * RPO. Defaults to on, RPO 10 s.
   */
  pitr?: PitrSpec;
  /** Days the bucket keeps binlog segments: the archived window the archiver reports is capped there. Defaults to no cap. */
  binlogRetentionDays?: number;
  /** The bundle to install as /usr/local/bin/mysql-backup. */
  bundle: HostBundle;
  /** Tags for every taggable child. Defaults to none. */
  tags?: Record<string, string>;
}

/** The values a replica's backup.json is rendered from. */
export interface BackupConfigInput {
  cluster: string;
  host: string;
  snapshot: SnapshotConfig;
  mysqlOptionFile: string;
  localDir: string;
  lockTimeoutMs?: number;
  lockMode?: BackupConfig["lockMode"];
  keepLocal?: number;
  bucketName: string;
  keyArn: string;
  prefix: string;
  queueUrl: string;
  region: string;
  /** The archiver's section, when PITR is on. */
  binlog?: BinlogArchiveConfig;
}

/** Renders a replica's backup.json; it passes the contract's parser or this throws, naming the key. */
export function renderBackupConfig(i: BackupConfigInput): BackupConfig {
  const config: BackupConfig = {
    cluster: i.cluster,
    host: i.host,
    mysql: { optionFile: i.mysqlOptionFile },
    snapshot: i.snapshot,
    localDir: i.localDir,
    ...(i.lockTimeoutMs === undefined ? {} : { lockTimeoutMs: i.lockTimeoutMs }),
    ...(i.lockMode === undefined ? {} : { lockMode: i.lockMode }),
    ...(i.keepLocal === undefined ? {} : { keepLocal: i.keepLocal }),
    // The key ARN, not the id: the bucket policy compares the SSE key header against the ARN.
    s3: { bucket: i.bucketName, prefix: i.prefix, kmsKeyId: i.keyArn },
    sqs: { queueUrl: i.queueUrl },
    aws: { region: i.region },
    metrics: { sink: "cloudwatch" },
    ...(i.binlog === undefined ? {} : { binlog: i.binlog }),
  };
  return parseBackupConfig(config);
}

/**
 * One replica host: its IAM role and instance profile (create its own backups and its cluster's binlog
 * segments, announce them, emit metrics; no read, no overwrite, no delete), and the installation over SSH of
 * the bundled host scripts, the backup config, the backup's systemd service and timer and, with point-in-time
 * recovery on, the binlog archiver's service. Re-installs only when a content hash changes.
 */
export class ReplicaAgent extends pulumi.ComponentResource {
  /** The replica's role: upload its cluster's backups, announce them, emit metrics. */
  readonly role: aws.iam.Role;
  /** Attach it to the replica's EC2 instance. */
  readonly instanceProfile: aws.iam.InstanceProfile;
  /** ARN of the replica's role. */
  readonly roleArn: pulumi.Output<string>;
  /** Name of the instance profile. */
  readonly instanceProfileName: pulumi.Output<string>;
  /** The rendered backup.json. */
  readonly backupConfig: pulumi.Output<string>;
  /** The hash the install is keyed on. */
  readonly installHash: pulumi.Output<string>;
  /** When the replica was set up (its role's creation, RFC 3339): its silence alarm counts from there. */
  readonly since: pulumi.Output<string>;

  constructor(name: string, args: ReplicaAgentArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mysql-backup-pipeline:index:ReplicaAgent", name, {}, opts);
    const tags = args.tags ?? {};

    const { role, profile } = replicaRole(this, name, args, tags);
    this.role = role;
    this.instanceProfile = profile;
    const files = hostFiles(args);
    this.backupConfig = files.config;
    this.installHash = files.config.apply((config) =>
      installHash({
        bundleSha256: args.bundle.sha256,
        config,
        service: files.service,
        timer: files.timer,
        binlogService: files.binlogService,
      }),
    );
    install(this, name, args, files, this.installHash);

    this.roleArn = this.role.arn;
    this.instanceProfileName = this.instanceProfile.name;
    this.since = this.role.createDate;
    this.registerOutputs({ roleArn: this.roleArn, instanceProfileName: this.instanceProfileName });
  }
}

/** The replica's role (upload its cluster's backups, announce them, emit metrics) and its instance profile. */
function replicaRole(
  parent: pulumi.Resource,
  name: string,
  args: ReplicaAgentArgs,
  tags: Record<string, string>,
): { role: aws.iam.Role; profile: aws.iam.InstanceProfile } {
  const role = new aws.iam.Role(
    `${name}-role`,
    {
      name: physicalName("aws:iam/role:Role", `${name}-role`),
      description: `Replica ${args.host} of cluster ${args.cluster}: uploads its backups`,
      assumeRolePolicy: JSON.stringify(ec2AssumeRolePolicy()),
      tags,
    },
    { parent },
  );
  new aws.iam.RolePolicy(
    `${name}-policy`,
    {
      name: physicalName("aws:iam/rolePolicy:RolePolicy", `${name}-policy`),
      role: role.id,
      policy: pulumi
        .all([args.bucketArn, args.keyArn, args.queueArn, args.region])
        .apply(([bucketArn, keyArn, queueArn, region]) =>
          JSON.stringify(
            replicaRolePolicy({
              bucketArn,
              keyArn,
              queueArn,
              region,
              prefix: args.prefix,
              cluster: args.cluster,
              host: args.host,
            }),
          ),
        ),
    },
    { parent },
  );
  const profile = new aws.iam.InstanceProfile(
    `${name}-profile`,
    {
      name: physicalName("aws:iam/instanceProfile:InstanceProfile", `${name}-profile`),
      role: role.name,
      tags,
    },
    { parent },
  );
  return { role, profile };
}

/** What is installed on a replica besides the bundle, rendered. */
interface HostFiles {
  /** backup.json. */
  config: pulumi.Output<string>;
  /** The backup service unit. */
  service: string;
  /** The backup timer unit. */
  timer: string;
  /** The binlog archiver's unit, or null when PITR is off. */
  binlogService: string | null;
  /** The MySQL option file backup.json names, which the install checks for. */
  optionFile: string;
}

/** Renders backup.json and the units from the arguments, every default applied. */
function hostFiles(args: ReplicaAgentArgs): HostFiles {
  const optionFile = args.mysqlOptionFile ?? `${CONFIG_DIR}/client.cnf`;
  const localDir = args.localDir ?? "/var/backups/mysql";
  const pitr = resolvePitr(args.pitr);
  const binlog: BinlogArchiveConfig | undefined = pitr.enabled
    ? {
        rpoSeconds: pitr.rpoSeconds,
        stateDir: BINLOG_STATE_DIR,
        announce: true, // this release's verifier fleet checks every segment on arrival
        ...(args.binlogRetentionDays === undefined ? {} : { retentionDays: args.binlogRetentionDays }),
      }
    : undefined;
  const config = pulumi.all([args.bucketName, args.keyArn, args.queueUrl, args.region]).apply(
    ([bucketName, keyArn, queueUrl, region]) =>
      JSON.stringify(
        renderBackupConfig({
          cluster: args.cluster,
          host: args.host,
          snapshot: args.snapshot,
          mysqlOptionFile: optionFile,
          localDir,
          lockTimeoutMs: args.lockTimeoutMs,
          lockMode: args.lockMode,
          keepLocal: args.keepLocal,
          bucketName,
          keyArn,
          prefix: args.prefix,
          queueUrl,
          region,
          binlog,
        }),
        null,
        2,
      ) + "\n",
  );
  const service = backupServiceUnit({
    cluster: args.cluster,
    host: args.host,
    writablePaths: backupWritablePaths(args.snapshot, localDir),
  });
  const timer = backupTimerUnit({
    schedule: args.schedule ?? "*-*-* 02:00:00 UTC",
    randomizedDelaySec: args.randomizedDelaySec,
  });
  const binlogService = pitr.enabled
    ? binlogServiceUnit({ cluster: args.cluster, host: args.host, stateDir: BINLOG_STATE_DIR })
    : null;
  return { config, service, timer, binlogService, optionFile };
}

/** Stage, copy and install over SSH; every step is keyed on the install hash. */
function install(
  parent: pulumi.Resource,
  name: string,
  args: ReplicaAgentArgs,
  files: HostFiles,
  hash: pulumi.Output<string>,
): void {
  const connection = sshConnection(args);
  const sudo = args.ssh.user === "root" ? "" : "sudo -n ";
  const triggers = [hash];
  const dir = hash.apply(stageDir);

  const stage = new command.remote.Command(
    `${name}-stage`,
    { connection, create: dir.apply((d) => `sh -c '${stageScript(d)}'`), triggers, logging: "stderr" },
    { parent },
  );
  const sources: Array<[string, pulumi.Input<pulumi.asset.Asset>]> = [
    ["mysql-backup.cjs", new pulumi.asset.FileAsset(args.bundle.path)],
    ["backup.json", files.config.apply((c): pulumi.asset.Asset => new pulumi.asset.StringAsset(c))],
    [BACKUP_SERVICE, new pulumi.asset.StringAsset(files.service)],
    [BACKUP_TIMER, new pulumi.asset.StringAsset(files.timer)],
    ...(files.binlogService === null
      ? []
      : [
          [BINLOG_SERVICE, new pulumi.asset.StringAsset(files.binlogService)] as [string, pulumi.asset.Asset],
        ]),
  ];
  const copies = sources.map(
    ([file, source]) =>
      new command.remote.CopyToRemote(
        `${name}-copy-${file.replace(/[^a-z0-9]+/gi, "-")}`,
        { connection, source, remotePath: dir.apply((d) => `${d}/${file}`), triggers },
        { parent, dependsOn: [stage] },
      ),
  );
  const installed = new command.remote.Command(
    `${name}-install`,
    {
      connection,
      // The script goes through stdin: nothing to quote, and it never appears in a process list.
      create: `${sudo}sh -s`,
      stdin: pulumi.all([dir, hash]).apply(([d, h]) =>
        installScript({
          dir: d,
          bundleSha256: args.bundle.sha256,
          optionFile: files.optionFile,
          hash: h,
          binlog: files.binlogService !== null,
        }),
      ),
      // `sh -c`, not stdin: the uninstall must not depend on what stdin held at create time.
      delete: hash.apply((h) => `${sudo}sh -c '${uninstallScript(h)}'`),
      triggers,
      logging: "stderr",
    },
    // A changed hash replaces the install, delete first: stacks deployed before the uninstall checked the
    // install marker keep an unconditional uninstall in their state, which must not run after the new install.
    { parent, dependsOn: copies, deleteBeforeReplace: true },
  );
  new command.remote.Command(
    `${name}-check`,
    // The findings go to stderr, the only stream the remote steps log (stdout could echo a file).
    { connection, create: `${sudo}${checkCommand()} 1>&2`, triggers, logging: "stderr" },
    { parent, dependsOn: [installed] },
  );
}

/**
 * `mysql-backup check` on the installed config: it proves, before the first 3 a.m. run, everything the
 * backup will need (privileges, volume, free space, S3, queue) and fails `pulumi up` with the findings
 * that name what to fix (exit 15). It leaves one small probe object in S3 per run (docs/first-hour.md).
 */
export function checkCommand(): string {
  return `${INSTALLED_BINARY} check --config ${BACKUP_CONFIG_PATH}`;
}

/** The connection of every remote step: pinned host key, secret private key, optional bastion. */
function sshConnection(args: ReplicaAgentArgs): command.types.input.remote.ConnectionArgs {
  const privateKey = pulumi.secret(args.privateKey);
  return {
    host: args.ssh.address,
    port: args.ssh.port ?? 22,
    user: args.ssh.user,
    hostKey: args.ssh.hostKey,
    privateKey,
    ...(args.bastion
      ? {
          proxy: {
            host: args.bastion.address,
            port: args.bastion.port ?? 22,
            user: args.bastion.user,
            hostKey: args.bastion.hostKey,
            privateKey,
          },
        }
      : {}),
  };
}

/**
 * What a backup run writes, so its unit can make everything else read-only (ProtectSystem=strict):
 * the local archives (and the run's lock file) and where the snapshot appears. ZFS snapshots live
 * inside the dataset's own `.zfs` directory and need no extra path.
 */
export function backupWritablePaths(snapshot: SnapshotConfig, localDir: string): string[] {
  switch (snapshot.driver) {
    case "btrfs":
      return [localDir, snapshot.snapshotDir];
    case "lvm":
      return [localDir, snapshot.mountDir];
    case "zfs":
      return [localDir];
  }
}
