import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import {
  DEFAULT_PREFIX,
  NAME_PATTERN,
  normalizePrefix,
  pipelineTags,
  type SnapshotConfig,
} from "../contracts";
import { Alerting, type AlertEndpoints } from "./alerting";
import { BackupBucket, type RetentionArgs } from "./backupBucket";
import { ARTIFACTS_PREFIX } from "./iam";
import { ReplicaAgent, type HostBundle, type SshEndpoint } from "./replicaAgent";
import { ConfigError, requireMatch } from "./validation";
import { VerificationQueue, type VerificationQueueArgs } from "./verificationQueue";
import { VerifierFleet, type AmiSelector, type ServerRelease } from "./verifierFleet";

/** One replica host that takes backups. */
export interface ReplicaSpec {
  /** The host's name in keys and metrics (`^[a-z0-9][a-z0-9._-]{0,62}$`). */
  host: string;
  /** How to reach it over SSH, with its pinned host key. */
  ssh: SshEndpoint;
  /** The secret private key for this host (and its bastion). */
  privateKey: pulumi.Input<string>;
  /** How it snapshots its datadir. */
  snapshot: SnapshotConfig;
  /** OnCalendar of its backup timer. Defaults to the cluster's schedule. */
  schedule?: string;
  /** The MySQL option file on the host. Defaults to "/etc/mysql-backup/client.cnf". */
  mysqlOptionFile?: string;
  /** Where archives are written before upload. Defaults to "/var/backups/mysql". */
  localDir?: string;
  /** Hard limit of the lock window in ms. Defaults to 5000. */
  lockTimeoutMs?: number;
}

/** One replicated cluster. */
export interface ClusterSpec {
  /** The cluster's name in keys and metrics. */
  name: string;
  /** The server its backups come from. */
  server: ServerRelease;
  /** OnCalendar of the backup timers. Defaults to "*-*-* 02:00:00 UTC". */
  schedule?: string;
  /** Hours within which a backup must succeed and be verified, or alarms fire. Defaults to 26. */
  windowHours?: number;
  /** A bastion for every replica of the cluster. Defaults to direct connections. */
  bastion?: SshEndpoint;
  /** The replicas that take backups (usually one per cluster is enough). */
  replicas: ReplicaSpec[];
}

/** Sizing and network of the verifier fleet. */
export interface VerifierSpec {
  /** Private subnets. */
  subnetIds: pulumi.Input<string>[];
  /** Security groups. */
  securityGroupIds: pulumi.Input<string>[];
  /** Defaults to "m6i.large". */
  instanceType?: string;
  /** Defaults to 2. */
  maxInstances?: number;
  /** Defaults to 200. */
  scratchVolumeGiB?: number;
  /** Defaults to the newest Debian 12 amd64 AMI. */
  ami?: AmiSelector;
  /** Defaults to 15. */
  idleMinutes?: number;
}

/** Arguments of {@link MysqlBackupPipeline}. */
export interface MysqlBackupPipelineArgs {
  /** The environment (dev, prod…) in tags and names. */
  environment: string;
  /** Key prefix above `<cluster>/`. Defaults to "backups". */
  prefix?: string;
  /** Retention and lifecycle of the bucket. Defaults to BackupBucket's defaults. */
  retention?: RetentionArgs;
  /** A second region for an off-site replica of the bucket. Defaults to none. */
  replicationRegion?: string;
  /** Queue settings (visibility timeout above the longest restore, redrive). Defaults to VerificationQueue's. */
  queue?: VerificationQueueArgs;
  /** The clusters and their replicas. */
  clusters: ClusterSpec[];
  /** The verifier fleet. */
  verifier: VerifierSpec;
  /** Alert subscriptions. Defaults to none. */
  alerts?: AlertEndpoints & { maxMessageAgeSeconds?: number };
  /** The bundled host scripts shipped to replicas and verifiers. */
  bundle: HostBundle;
  /** Let `pulumi destroy` delete the bucket with its backups. Defaults to false. */
  forceDestroy?: boolean;
}

/** The verifier restores one server release: every cluster must share it. */
export function commonServer(clusters: ClusterSpec[]): ServerRelease {
  const [first, ...rest] = clusters;
  if (!first) throw new ConfigError("clusters", "must list at least one cluster");
  rest.forEach((c, i) => {
    if (c.server.flavor !== first.server.flavor || c.server.version !== first.server.version) {
      throw new ConfigError(
        `clusters[${i + 1}].server`,
        `is ${c.server.flavor} ${c.server.version} but clusters[0] is ${first.server.flavor} ${first.server.version}: one verifier fleet restores one release, so deploy clusters of another release as a separate stack`,
      );
    }
  });
  return first.server;
}

/**
 * The backup prefix must be a real sub-tree: the lifecycle expires everything below it, and the
 * verifier bundle lives under `artifacts/`, which replicas must never be able to write.
 */
function checkPrefix(prefix: string): string {
  const p = normalizePrefix(prefix);
  if (
    p === "" ||
    p === ARTIFACTS_PREFIX.split("/")[0] ||
    p.startsWith(ARTIFACTS_PREFIX.split("/")[0] + "/")
  ) {
    throw new ConfigError(
      "prefix",
      `must be a non-empty key prefix outside "${ARTIFACTS_PREFIX}", got ${JSON.stringify(prefix)}`,
    );
  }
  return p;
}

/** Names must be unique and key-safe: they become S3 key segments, metric dimensions and resource names. */
function checkNames(clusters: ClusterSpec[]): void {
  const pattern = new RegExp(NAME_PATTERN);
  const seen = new Set<string>();
  clusters.forEach((c, i) => {
    requireMatch(`clusters[${i}].name`, c.name, pattern, `a name matching ${NAME_PATTERN}`);
    if (seen.has(c.name)) throw new ConfigError(`clusters[${i}].name`, `"${c.name}" appears twice`);
    seen.add(c.name);
    if (c.replicas.length === 0)
      throw new ConfigError(`clusters[${i}].replicas`, "must list at least one replica");
    c.replicas.forEach((r, j) => {
      requireMatch(`clusters[${i}].replicas[${j}].host`, r.host, pattern, `a name matching ${NAME_PATTERN}`);
    });
  });
}

/**
 * The whole pipeline of one environment: the backup bucket, the verification queue, the verifier
 * fleet, one agent per replica, and alerting, wired together.
 */
export class MysqlBackupPipeline extends pulumi.ComponentResource {
  /** The backup bucket. */
  readonly bucketName: pulumi.Output<string>;
  /** The backup bucket's ARN. */
  readonly bucketArn: pulumi.Output<string>;
  /** The key every backup is encrypted with. */
  readonly kmsKeyArn: pulumi.Output<string>;
  /** The queue replicas announce backups on. */
  readonly queueUrl: pulumi.Output<string>;
  /** Where messages land after every verification attempt failed. */
  readonly deadLetterQueueUrl: pulumi.Output<string>;
  /** The topic alarms notify. */
  readonly alertTopicArn: pulumi.Output<string>;
  /** The verifier instances' role. */
  readonly verifierRoleArn: pulumi.Output<string>;
  /** The verifier Auto Scaling group. */
  readonly verifierGroupName: pulumi.Output<string>;
  /** Role ARN per replica, keyed `<cluster>/<host>`. */
  readonly replicaRoleArns: pulumi.Output<Record<string, string>>;
  /** Instance profile per replica (attach it to the replica's EC2 instance), keyed `<cluster>/<host>`. */
  readonly replicaInstanceProfiles: pulumi.Output<Record<string, string>>;
  /** The CloudWatch dashboard. */
  readonly dashboardName: pulumi.Output<string>;

  constructor(name: string, args: MysqlBackupPipelineArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mysql-backup-pipeline:index:MysqlBackupPipeline", name, {}, opts);
    checkNames(args.clusters);
    const server = commonServer(args.clusters);
    const tags = pipelineTags(name, args.environment);
    const parent = { parent: this };
    const prefix = checkPrefix(args.prefix ?? DEFAULT_PREFIX);
    const region = aws.getRegionOutput({}, parent).region;

    const bucket = new BackupBucket(
      `${name}-backups`,
      {
        prefix,
        retention: args.retention,
        replicationRegion: args.replicationRegion,
        forceDestroy: args.forceDestroy,
        tags,
      },
      parent,
    );
    const queue = new VerificationQueue(`${name}-verification`, { ...args.queue, tags }, parent);
    const fleet = new VerifierFleet(
      `${name}-verifier`,
      {
        ...args.verifier,
        server,
        bucketName: bucket.bucketName,
        bucketArn: bucket.bucketArn,
        keyArn: bucket.keyArn,
        prefix,
        queueUrl: queue.queueUrl,
        queueArn: queue.queueArn,
        queueName: queue.queueName,
        visibilityTimeoutSeconds: queue.settings.visibilityTimeoutSeconds,
        region,
        bundle: args.bundle,
        tags,
      },
      parent,
    );
    const agents = args.clusters.flatMap((cluster) =>
      cluster.replicas.map((replica) => ({
        key: `${cluster.name}/${replica.host}`,
        agent: new ReplicaAgent(
          `${name}-${cluster.name}-${replica.host}`,
          {
            cluster: cluster.name,
            host: replica.host,
            ssh: replica.ssh,
            privateKey: replica.privateKey,
            bastion: cluster.bastion,
            snapshot: replica.snapshot,
            schedule: replica.schedule ?? cluster.schedule,
            mysqlOptionFile: replica.mysqlOptionFile,
            localDir: replica.localDir,
            lockTimeoutMs: replica.lockTimeoutMs,
            bucketName: bucket.bucketName,
            bucketArn: bucket.bucketArn,
            keyArn: bucket.keyArn,
            prefix,
            queueUrl: queue.queueUrl,
            queueArn: queue.queueArn,
            region,
            bundle: args.bundle,
            tags,
          },
          parent,
        ),
      })),
    );
    const alerting = new Alerting(
      `${name}-alerts`,
      {
        clusters: args.clusters.map((c) => ({ name: c.name, windowHours: c.windowHours })),
        endpoints: args.alerts,
        maxMessageAgeSeconds: args.alerts?.maxMessageAgeSeconds,
        queueName: queue.queueName,
        deadLetterQueueName: queue.deadLetterQueueName,
        tags,
      },
      parent,
    );

    this.bucketName = bucket.bucketName;
    this.bucketArn = bucket.bucketArn;
    this.kmsKeyArn = bucket.keyArn;
    this.queueUrl = queue.queueUrl;
    this.deadLetterQueueUrl = queue.deadLetterQueue.url;
    this.alertTopicArn = alerting.topicArn;
    this.verifierRoleArn = fleet.roleArn;
    this.verifierGroupName = fleet.groupName;
    this.replicaRoleArns = pulumi.output(
      Object.fromEntries(agents.map(({ key, agent }) => [key, agent.roleArn])),
    );
    this.replicaInstanceProfiles = pulumi.output(
      Object.fromEntries(agents.map(({ key, agent }) => [key, agent.instanceProfileName])),
    );
    this.dashboardName = alerting.dashboardName;
    this.registerOutputs({
      bucketName: this.bucketName,
      queueUrl: this.queueUrl,
      alertTopicArn: this.alertTopicArn,
      verifierRoleArn: this.verifierRoleArn,
      replicaRoleArns: this.replicaRoleArns,
      dashboardName: this.dashboardName,
    });
  }
}
