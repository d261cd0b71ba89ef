import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { BINLOGS_SEGMENT, DEFAULT_PREFIX, NAME_PATTERN, normalizePrefix, pipelineTags } from "../contracts";
import type { AlertedCluster, WatchedCluster } from "./alarms";
import { Alerting, type AlertEndpoints, type AlertingArgs } from "./alerting";
import { BackupBucket, type BackupBucketArgs } from "./backupBucket";
import { OperatorRole } from "./operatorRole";
import { resolvePitr } from "./pitr";
import { ARTIFACTS_PREFIX } from "./iam";
import { checkPipelineName } from "./names";
import { ReplicaAgent, type HostBundle, type PipelineEndpoints, type ReplicaAgentArgs } from "./replicaAgent";
import { ConfigError, requireMatch } from "./validation";
import { VerificationQueue, type VerificationQueueArgs } from "./verificationQueue";
import { VerifierFleet, type VerifierSpec } from "./verifierFleet";
import { verifierRoleName } from "./verifierRole";
import type { ServerRelease } from "./verifierUserData";

/** One replica host that takes backups; each field is documented on {@link ReplicaAgentArgs}. */
export interface ReplicaSpec extends Pick<
  ReplicaAgentArgs,
  "host" | "ssh" | "privateKey" | "snapshot" | "mysqlOptionFile" | "localDir" | "lockTimeoutMs" | "lockMode"
> {
  /** OnCalendar of its backup timer. Defaults to the cluster's schedule. */
  schedule?: string;
}

/** One replicated cluster. */
export interface ClusterSpec
  extends
    Pick<AlertedCluster, "name" | "windowHours" | "pitr">,
    Pick<ReplicaAgentArgs, "schedule" | "bastion"> {
  /**
   * The server its backups come from. Every cluster of a stack shares it: one verifier fleet restores
   * one release.
   */
  server: ServerRelease;
  /** The replicas that take backups (usually one per cluster is enough). */
  replicas: ReplicaSpec[];
}

/** Arguments of {@link MysqlBackupPipeline}; the bucket's are documented on {@link BackupBucketArgs}. */
export interface MysqlBackupPipelineArgs extends Pick<
  BackupBucketArgs,
  "prefix" | "retention" | "replicationRegion" | "forceDestroy"
> {
  /** The environment (dev, prod…) in tags and names. */
  environment: string;
  /** The verification queue. Defaults to VerificationQueue's defaults. */
  queue?: Omit<VerificationQueueArgs, "tags">;
  /** The clusters and their replicas. */
  clusters: ClusterSpec[];
  /** The verifier fleet's network and sizing. */
  verifier: VerifierSpec;
  /** Alert subscriptions and the age of a waiting message that pages. Defaults to none, and Alerting's age. */
  alerts?: AlertEndpoints & Pick<AlertingArgs, "maxMessageAgeSeconds">;
  /** The bundled host scripts shipped to replicas and verifiers. */
  bundle: HostBundle;
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
    const hosts = new Set<string>();
    c.replicas.forEach((r, j) => {
      const field = `clusters[${i}].replicas[${j}].host`;
      requireMatch(field, r.host, pattern, `a name matching ${NAME_PATTERN}`);
      if (r.host === BINLOGS_SEGMENT)
        throw new ConfigError(field, `"${r.host}" is reserved for the cluster's binary log archive`);
      if (hosts.has(r.host)) throw new ConfigError(field, `"${r.host}" appears twice in cluster ${c.name}`);
      hosts.add(r.host);
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
  /** The CloudWatch Logs group of the verifiers. */
  readonly verifierLogGroupName: pulumi.Output<string>;
  /** The S3 gateway endpoint of the verifiers' subnets, checked to serve each of them. */
  readonly verifierS3EndpointId: pulumi.Output<string>;
  /** Role ARN per replica, keyed `<cluster>/<host>`. */
  readonly replicaRoleArns: pulumi.Output<Record<string, string>>;
  /** Instance profile per replica (attach it to the replica's EC2 instance), keyed `<cluster>/<host>`. */
  readonly replicaInstanceProfiles: pulumi.Output<Record<string, string>>;
  /** The CloudWatch dashboard. */
  readonly dashboardName: pulumi.Output<string>;
  /** The operators' read-only role (`mysql-backup status`). */
  readonly operatorRoleArn: pulumi.Output<string>;
  /** `status.json` for this stack: the bucket, every cluster and replica it deploys. */
  readonly statusConfig: pulumi.Output<string>;

  constructor(name: string, args: MysqlBackupPipelineArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mysql-backup-pipeline:index:MysqlBackupPipeline", name, {}, opts);
    checkPipelineName(name);
    checkNames(args.clusters);
    const server = commonServer(args.clusters);
    const tags = pipelineTags(name, args.environment);
    const prefix = checkPrefix(args.prefix ?? DEFAULT_PREFIX);
    const region = aws.getRegionOutput({}, { parent: this }).region;
    const fleetName = `${name}-verifier`;

    const bucket = new BackupBucket(
      `${name}-backups`,
      {
        prefix,
        retention: args.retention,
        replicationRegion: args.replicationRegion,
        forceDestroy: args.forceDestroy,
        verdictWriterArn: roleArn(this, verifierRoleName(fleetName)),
        tags,
      },
      { parent: this },
    );
    const queue = new VerificationQueue(`${name}-verification`, { ...args.queue, tags }, { parent: this });
    const endpoints: PipelineEndpoints = {
      bucketName: bucket.bucketName,
      bucketArn: bucket.bucketArn,
      keyArn: bucket.keyArn,
      prefix,
      queueUrl: queue.queueUrl,
      queueArn: queue.queueArn,
      region,
    };
    const fleet = verifierFleet(this, fleetName, args, { endpoints, server, queue, tags });
    // Binlog segments fall under the bucket's catch-all lifecycle rule (docs/pitr.md): the longest retention.
    const binlogRetentionDays = (bucket.retention.monthly ?? bucket.retention.daily).expireDays;
    const agents = replicaAgents(this, name, args, { ...endpoints, binlogRetentionDays }, tags);
    const alerts = alerting(this, name, args, { queue, agents }, tags);
    const operators = operatorRole(this, name, args, endpoints, tags);

    this.bucketName = bucket.bucketName;
    this.bucketArn = bucket.bucketArn;
    this.kmsKeyArn = bucket.keyArn;
    this.queueUrl = queue.queueUrl;
    this.deadLetterQueueUrl = queue.deadLetterQueue.url;
    this.alertTopicArn = alerts.topicArn;
    this.verifierRoleArn = fleet.roleArn;
    this.verifierGroupName = fleet.groupName;
    this.verifierLogGroupName = fleet.logGroupName;
    this.verifierS3EndpointId = fleet.s3EndpointId;
    this.replicaRoleArns = pulumi.output(
      Object.fromEntries(agents.map(({ key, agent }) => [key, agent.roleArn])),
    );
    this.replicaInstanceProfiles = pulumi.output(
      Object.fromEntries(agents.map(({ key, agent }) => [key, agent.instanceProfileName])),
    );
    this.dashboardName = alerts.dashboardName;
    this.operatorRoleArn = operators.roleArn;
    this.statusConfig = operators.statusConfig;
    this.registerOutputs({
      bucketName: this.bucketName,
      queueUrl: this.queueUrl,
      alertTopicArn: this.alertTopicArn,
      verifierRoleArn: this.verifierRoleArn,
      replicaRoleArns: this.replicaRoleArns,
      dashboardName: this.dashboardName,
      operatorRoleArn: this.operatorRoleArn,
    });
  }
}

/** The ARN a role of this name has in the stack's account (the role need not exist yet). */
function roleArn(parent: pulumi.Resource, roleName: string): pulumi.Output<string> {
  const identity = aws.getCallerIdentityOutput({}, { parent });
  const partition = aws.getPartitionOutput({}, { parent });
  return pulumi.interpolate`arn:${partition.partition}:iam::${identity.accountId}:role/${roleName}`;
}

/** The one verifier fleet, restoring the clusters' common server release. */
function verifierFleet(
  parent: pulumi.Resource,
  fleetName: string,
  args: MysqlBackupPipelineArgs,
  wiring: {
    endpoints: PipelineEndpoints;
    server: ServerRelease;
    queue: VerificationQueue;
    tags: Record<string, string>;
  },
): VerifierFleet {
  return new VerifierFleet(
    fleetName,
    {
      ...args.verifier,
      ...wiring.endpoints,
      server: wiring.server,
      queueName: wiring.queue.queueName,
      visibilityTimeoutSeconds: wiring.queue.settings.visibilityTimeoutSeconds,
      maxReceiveCount: wiring.queue.settings.maxReceiveCount,
      bundle: args.bundle,
      tags: wiring.tags,
    },
    { parent },
  );
}

/** One replica's agent, with where it belongs. */
interface PlacedAgent {
  /** `<cluster>/<host>`. */
  key: string;
  cluster: string;
  host: string;
  agent: ReplicaAgent;
}

/** One agent per replica, keyed `<cluster>/<host>`; a replica inherits its cluster's schedule and bastion. */
function replicaAgents(
  parent: pulumi.Resource,
  name: string,
  args: MysqlBackupPipelineArgs,
  endpoints: PipelineEndpoints & { binlogRetentionDays: number },
  tags: Record<string, string>,
): PlacedAgent[] {
  return args.clusters.flatMap((cluster) =>
    cluster.replicas.map((replica) => ({
      key: `${cluster.name}/${replica.host}`,
      cluster: cluster.name,
      host: replica.host,
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
          pitr: cluster.pitr,
          lockMode: replica.lockMode,
          ...endpoints,
          bundle: args.bundle,
          tags,
        },
        { parent },
      ),
    })),
  );
}

/**
 * The clusters as the alarms watch them: every replica on its own, each from when its role was created, and
 * the cluster from its first replica's (a new cluster or replica does not page before a whole window passed).
 */
function watchedClusters(args: MysqlBackupPipelineArgs, agents: PlacedAgent[]): WatchedCluster[] {
  return args.clusters.map((c) => {
    const own = agents.filter((a) => a.cluster === c.name);
    return {
      name: c.name,
      windowHours: c.windowHours,
      pitr: c.pitr,
      since: pulumi.all(own.map((a) => a.agent.since)).apply((dates) => [...dates].sort()[0]),
      hosts: own.map((a) => ({ name: a.host, since: a.agent.since })),
    };
  });
}

/** The alarms of every cluster, replica and of the queue, on one topic. */
function alerting(
  parent: pulumi.Resource,
  name: string,
  args: MysqlBackupPipelineArgs,
  wiring: { queue: VerificationQueue; agents: PlacedAgent[] },
  tags: Record<string, string>,
): Alerting {
  const { queue } = wiring;
  return new Alerting(
    `${name}-alerts`,
    {
      clusters: watchedClusters(args, wiring.agents),
      endpoints: args.alerts,
      maxMessageAgeSeconds: args.alerts?.maxMessageAgeSeconds,
      queueName: queue.queueName,
      deadLetterQueueName: queue.deadLetterQueueName,
      tags,
    },
    { parent },
  );
}

/** The operators' read-only role and the `status.json` it reads with (`mysql-backup status`). */
function operatorRole(
  parent: pulumi.Resource,
  name: string,
  args: MysqlBackupPipelineArgs,
  endpoints: PipelineEndpoints,
  tags: Record<string, string>,
): OperatorRole {
  return new OperatorRole(
    `${name}-operators`,
    {
      bucketName: endpoints.bucketName,
      bucketArn: endpoints.bucketArn,
      keyArn: endpoints.keyArn,
      region: endpoints.region,
      prefix: endpoints.prefix,
      clusters: args.clusters.map((c) => ({
        name: c.name,
        windowHours: c.windowHours,
        hosts: c.replicas.map((r) => r.host),
        pitr: resolvePitr(c.pitr),
      })),
      tags,
    },
    { parent },
  );
}
