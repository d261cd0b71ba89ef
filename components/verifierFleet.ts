import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { schemaFor } from "../contracts";
import { BUNDLE_KEY } from "./iam";
import type { HostBundle, PipelineEndpoints } from "./replicaAgent";
import { ConfigError, requireInteger, requireMatch } from "./validation";
import { s3EndpointSchema, s3GatewayEndpoint, type S3EndpointSpec } from "./verifierNetwork";
import { instanceRole, logGroup } from "./verifierRole";
import { autoScalingGroup, scaleOutOnBacklog, scaleToZeroWhenIdle } from "./verifierScaling";
import {
  renderUserData,
  renderVerifyConfig,
  type ServerRelease,
  type VerifierImage,
} from "./verifierUserData";

/** How the verifier's AMI is chosen: by id, or the newest image of an owner matching a name. */
export interface AmiSelector {
  /** A fixed AMI id. Defaults to a lookup. */
  id?: string;
  /** The AMI owner of the lookup. Defaults to "136693071363" (Debian). */
  owner?: string;
  /** The AMI name pattern of the lookup. Defaults to "debian-12-amd64-*". */
  namePattern?: string;
  /**
   * The image already holds Node.js (20 or newer), the server release, the AWS CLI, zstd and the CloudWatch
   * agent, so a boot installs nothing and reaches nothing but AWS: every scale-out is identical, whatever
   * the package mirrors do. Defaults to false (Debian 12, installed at boot).
   */
  baked?: boolean;
}

/** Arguments of {@link VerifierFleet}. */
export interface VerifierFleetArgs extends PipelineEndpoints {
  /** The server flavor and version to restore into. */
  server: ServerRelease;
  /** Private subnets the verifiers run in (no public IP is ever assigned). */
  subnetIds: pulumi.Input<string>[];
  /** Security groups of the verifiers (egress as docs/infrastructure.md lists it). */
  securityGroupIds: pulumi.Input<string>[];
  /** How the verifiers reach S3: an S3 gateway endpoint the stack creates, or one that exists. */
  s3Endpoint: S3EndpointSpec;
  /** The EC2 instance types, in order of preference; with `spot`, list several. Defaults to ["m6i.large"]. */
  instanceTypes?: string[];
  /**
   * Run on Spot capacity (the verifier releases its message when the instance is reclaimed, and another
   * verifier restores it again). Defaults to false.
   */
  spot?: boolean;
  /**
   * Upper bound of the fleet. It grows while more backups wait or run than instances exist, and returns to
   * 0 after `idleMinutes` with nothing waiting or in flight. Defaults to 2.
   */
  maxInstances?: number;
  /**
   * Seconds a new instance is given before the scaling policy may add another for the same backlog (about
   * the lag of the queue's metrics and a boot). Defaults to 600.
   */
  warmupSeconds?: number;
  /**
   * Size of the encrypted gp3 root volume, which holds the scratch restores: make it larger than the
   * largest restored datadir plus its archive, and three datadirs for the verifier to keep the newest
   * verified tree for the next chain proof (`chain.keepVerified`; below that it restores A again). Defaults
   * to 200.
   */
  scratchVolumeGiB?: number;
  /**
   * Write throughput of the scratch volume in MiB/s (gp3: 125–1000; IOPS raised to match, 4 per MiB/s). A
   * verification writes the whole datadir there and reads it back for the checks: a 1 TB restore within an
   * hour needs ≥ 300, on an instance type whose EBS baseline carries it (BENCHMARKS.md, the model).
   * Defaults to gp3's included 125 MiB/s and 3000 IOPS.
   */
  scratchVolumeMiBps?: number;
  /**
   * The AMI. A new image (or a new bundle) changes the launch template, which rolls the group through
   * an instance refresh. Its root device name is read from the image. Defaults to the newest Debian 12
   * amd64 image.
   */
  ami?: AmiSelector;
  /**
   * Node.js major version installed from NodeSource at boot (not the Pulumi program's own Node, which
   * package.json pins). Defaults to 22.
   */
  nodeMajorVersion?: number;
  /** Minutes of an empty queue before the fleet scales back to zero. Defaults to 15. */
  idleMinutes?: number;
  /** Days the verifiers' logs stay in CloudWatch Logs (one of the values CloudWatch allows). Defaults to 90. */
  logRetentionDays?: number;
  /** The verification queue's name (its metrics' dimension). */
  queueName: pulumi.Input<string>;
  /** Visibility timeout the verifier receives with (the queue's). */
  visibilityTimeoutSeconds: number;
  /** The queue's redrive count (binlog segments are deferred fewer times). Defaults to the verifier's default deferrals. */
  maxReceiveCount?: number;
  /** The bundle the stack uploads for the verifiers to fetch. */
  bundle: HostBundle;
  /** Tags for every taggable child (and the instances and volumes). Defaults to none. */
  tags?: Record<string, string>;
}

/**
 * The fields of {@link VerifierFleetArgs} a stack chooses (its `verifier` config key); the pipeline
 * wires the others.
 */
export type VerifierSpec = Pick<
  VerifierFleetArgs,
  | "subnetIds"
  | "securityGroupIds"
  | "s3Endpoint"
  | "instanceTypes"
  | "spot"
  | "maxInstances"
  | "warmupSeconds"
  | "scratchVolumeGiB"
  | "scratchVolumeMiBps"
  | "idleMinutes"
  | "ami"
  | "nodeMajorVersion"
  | "logRetentionDays"
>;

/** The retention periods CloudWatch Logs accepts. */
const LOG_RETENTION_DAYS = [
  1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
] as const;

/**
 * {@link VerifierSpec} as JSON. The stack config's `verifier` key is validated with it and VerifierFleet
 * checks its arguments against its bounds, so each bound is stated here only.
 */
export const verifierSpecSchema = schemaFor<pulumi.Unwrap<VerifierSpec>>()({
  type: "object",
  additionalProperties: false,
  required: ["subnetIds", "securityGroupIds", "s3Endpoint"],
  properties: {
    subnetIds: { type: "array", minItems: 1, items: { type: "string", pattern: "^subnet-[0-9a-f]+$" } },
    securityGroupIds: { type: "array", minItems: 1, items: { type: "string", pattern: "^sg-[0-9a-f]+$" } },
    s3Endpoint: s3EndpointSchema,
    instanceTypes: {
      type: "array",
      minItems: 1,
      maxItems: 20,
      items: { type: "string", pattern: "^[a-z0-9-]+\\.[a-z0-9]+$" },
    },
    spot: { type: "boolean" },
    maxInstances: { type: "integer", minimum: 1, maximum: 100 },
    warmupSeconds: { type: "integer", minimum: 60, maximum: 3600 },
    scratchVolumeGiB: { type: "integer", minimum: 20, maximum: 16384 },
    scratchVolumeMiBps: { type: "integer", minimum: 125, maximum: 1000 },
    idleMinutes: { type: "integer", minimum: 5, maximum: 1440 },
    nodeMajorVersion: { type: "integer", minimum: 20, maximum: 99 },
    logRetentionDays: { enum: LOG_RETENTION_DAYS },
    ami: {
      type: "object",
      additionalProperties: false,
      properties: {
        id: { type: "string", pattern: "^ami-[0-9a-f]{8,17}$" },
        owner: { type: "string", pattern: "^(\\d{12}|amazon|self|aws-marketplace)$" },
        namePattern: { type: "string", minLength: 1 },
        baked: { type: "boolean" },
      },
    },
  },
});

/** The fleet's settings with every default applied and every bound checked. */
interface FleetSettings {
  instanceTypes: string[];
  maxInstances: number;
  warmupSeconds: number;
  scratchVolumeGiB: number;
  /** Unset: gp3's included throughput, and the template says nothing (no change for existing stacks). */
  scratchVolumeMiBps?: number;
  idleMinutes: number;
  logRetentionDays: number;
  image: VerifierImage;
}

/** gp3's included throughput (MiB/s) and IOPS. */
const GP3_BASELINE_MIBPS = 125;
const GP3_BASELINE_IOPS = 3000;

/** A gp3 volume's throughput and IOPS for `mibps`; gp3 allows at most 0.25 MiB/s per provisioned IOPS. */
function scratchThroughput(mibps: number | undefined): { throughput?: number; iops?: number } {
  if (mibps === undefined) return {};
  return { throughput: mibps, iops: Math.max(GP3_BASELINE_IOPS, mibps * 4) };
}

/** Applies the defaults of {@link VerifierFleetArgs}; throws a ConfigError naming the first bad field. */
function resolveFleetSettings(args: VerifierFleetArgs): FleetSettings {
  const spec = verifierSpecSchema.properties;
  const int = (field: keyof typeof spec & keyof VerifierFleetArgs, fallback: number) =>
    requireInteger(
      `verifier.${field}`,
      args[field] ?? fallback,
      spec[field] as { minimum: number; maximum: number },
    );
  if (args.subnetIds.length === 0)
    throw new ConfigError("verifier.subnetIds", "must list at least one private subnet");
  if (args.ami?.id) {
    requireMatch(
      "verifier.ami.id",
      args.ami.id,
      new RegExp(spec.ami.properties.id.pattern),
      "an AMI id (ami-…)",
    );
  }
  const instanceTypes = args.instanceTypes ?? ["m6i.large"];
  if (instanceTypes.length === 0)
    throw new ConfigError("verifier.instanceTypes", "must list at least one type");
  const logRetentionDays = args.logRetentionDays ?? 90;
  if (!(spec.logRetentionDays.enum as readonly number[]).includes(logRetentionDays)) {
    throw new ConfigError(
      "verifier.logRetentionDays",
      `must be one of ${spec.logRetentionDays.enum.join(", ")} (CloudWatch Logs' periods), got ${logRetentionDays}`,
    );
  }
  return {
    instanceTypes,
    maxInstances: int("maxInstances", 2),
    warmupSeconds: int("warmupSeconds", 600),
    scratchVolumeGiB: int("scratchVolumeGiB", 200),
    scratchVolumeMiBps:
      args.scratchVolumeMiBps === undefined ? undefined : int("scratchVolumeMiBps", GP3_BASELINE_MIBPS),
    idleMinutes: int("idleMinutes", 15),
    logRetentionDays,
    image: args.ami?.baked
      ? { baked: true }
      : { baked: false, nodeMajorVersion: int("nodeMajorVersion", 22) },
  };
}

/**
 * The verifier fleet: a launch template (IMDSv2 only, hop limit 1, encrypted gp3, no public IP, detailed
 * monitoring, terminate on shutdown, cloud-init), an Auto Scaling group in private subnets from 0 to N that
 * grows by step with the backlog and returns to zero when the queue is idle, refreshed when the template
 * changes, an instance role with exactly the verifier's permissions, an encrypted log group, the S3 gateway
 * endpoint of its subnets, and the host-script bundle.
 */
export class VerifierFleet extends pulumi.ComponentResource {
  /** The verifier instances' role. */
  readonly role: aws.iam.Role;
  /** The template every verifier starts from. */
  readonly launchTemplate: aws.ec2.LaunchTemplate;
  /** The Auto Scaling group (0 to `maxInstances`). */
  readonly group: aws.autoscaling.Group;
  /** The bundle object (one key; each upgrade is a new version of it). */
  readonly bundle: aws.s3.BucketObjectv2;
  /** ARN of the verifier role. */
  readonly roleArn: pulumi.Output<string>;
  /** Name of the Auto Scaling group. */
  readonly groupName: pulumi.Output<string>;
  /** Name of the log group the instances ship their logs to. */
  readonly logGroupName: pulumi.Output<string>;
  /**
   * The S3 gateway endpoint serving the subnets, checked: it fails, naming the subnet, when one of them is
   * not served. Export it (the stack program does), so that `pulumi preview` fails.
   */
  readonly s3EndpointId: pulumi.Output<string>;
  /** The rendered cloud-init user-data (plain text). */
  readonly userData: pulumi.Output<string>;

  constructor(name: string, args: VerifierFleetArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mysql-backup-pipeline:index:VerifierFleet", name, {}, opts);
    const settings = resolveFleetSettings(args);
    const tags = args.tags ?? {};

    const logs = logGroup(this, name, settings.logRetentionDays, tags);
    const { role, profile } = instanceRole(this, name, { ...args, logGroupArn: logs.arn }, tags);
    this.role = role;
    const s3Endpoint = s3GatewayEndpoint(this, name, { spec: args.s3Endpoint, ...args }, tags);
    this.s3EndpointId = s3Endpoint.checked;
    this.bundle = bundleObject(this, name, args, tags);
    const image = amiLookup(this, args.ami);
    this.userData = userData(args, settings.image, this.bundle, logs.name);
    this.launchTemplate = launchTemplate(this, name, {
      args,
      settings,
      image,
      profile,
      userData: this.userData,
      s3Endpoint: s3Endpoint.id,
      tags,
    });
    this.group = autoScalingGroup(this, name, {
      template: this.launchTemplate,
      subnetIds: args.subnetIds,
      maxInstances: settings.maxInstances,
      instanceTypes: settings.instanceTypes,
      spot: args.spot ?? false,
      tags,
    });
    const scaling = { group: this.group, queueName: args.queueName };
    scaleOutOnBacklog(this, name, { ...scaling, warmupSeconds: settings.warmupSeconds }, tags);
    scaleToZeroWhenIdle(this, name, { ...scaling, idleMinutes: settings.idleMinutes }, tags);

    this.roleArn = this.role.arn;
    this.groupName = this.group.name;
    this.logGroupName = logs.name;
    this.registerOutputs({
      roleArn: this.roleArn,
      groupName: this.groupName,
      logGroupName: this.logGroupName,
      launchTemplateId: this.launchTemplate.id,
    });
  }
}

/**
 * The host-script bundle, under one key: an upgrade writes a new version of the same object (an update,
 * never a delete of a version the object lock protects), and the launch template boots the exact version.
 * Retained when the resource goes (a replaced key or a destroyed stack): the locked versions cannot be
 * deleted, and the bucket's noncurrent-version rule expires them once their lock ends.
 */
function bundleObject(
  parent: pulumi.Resource,
  name: string,
  args: VerifierFleetArgs,
  tags: Record<string, string>,
): aws.s3.BucketObjectv2 {
  return new aws.s3.BucketObjectv2(
    `${name}-bundle`,
    {
      bucket: args.bucketName,
      key: BUNDLE_KEY,
      source: new pulumi.asset.FileAsset(args.bundle.path),
      // The content, not the path, decides when a new version goes up.
      sourceHash: args.bundle.sha256,
      contentType: "application/javascript",
      serverSideEncryption: "aws:kms",
      kmsKeyId: args.keyArn,
      // Uploads to a bucket with a default object lock retention must carry a checksum.
      checksumAlgorithm: "SHA256",
      tags,
    },
    { parent, retainOnDelete: true },
  );
}

/** The instances' cloud-init user-data, with their verify.json inside. */
function userData(
  args: VerifierFleetArgs,
  image: VerifierImage,
  bundle: aws.s3.BucketObjectv2,
  logGroupName: pulumi.Output<string>,
): pulumi.Output<string> {
  return pulumi
    .all([args.bucketName, args.queueUrl, args.region, args.keyArn, bundle.versionId, logGroupName])
    .apply(([bucketName, queueUrl, region, keyArn, versionId, groupName]) =>
      renderUserData({
        server: args.server,
        image,
        bundle: { bucket: bucketName, key: BUNDLE_KEY, versionId, sha256: args.bundle.sha256 },
        region,
        logGroupName: groupName,
        verifyConfig: renderVerifyConfig({
          queueUrl,
          visibilityTimeoutSeconds: args.visibilityTimeoutSeconds,
          maxReceiveCount: args.maxReceiveCount,
          region,
          keyArn,
        }),
      }),
    );
}

/** The image the instances boot, and the device name of its root volume. */
interface BootImage {
  id: string;
  rootDeviceName: string;
}

/** The pinned AMI, or the newest image of the owner whose name matches; looked up either way for its root device. */
function amiLookup(parent: pulumi.Resource, ami: AmiSelector | undefined): pulumi.Output<BootImage> {
  const filters = ami?.id
    ? [{ name: "image-id", values: [ami.id] }]
    : [{ name: "name", values: [ami?.namePattern ?? "debian-12-amd64-*"] }];
  return aws.ec2
    .getAmiOutput(
      {
        ...(ami?.id ? {} : { owners: [ami?.owner ?? "136693071363"], mostRecent: true }),
        filters: [...filters, { name: "state", values: ["available"] }],
      },
      { parent },
    )
    .apply((image) => ({ id: image.id, rootDeviceName: image.rootDeviceName }));
}

/** What the launch template is built from. */
interface TemplateInput {
  args: VerifierFleetArgs;
  settings: FleetSettings;
  image: pulumi.Output<BootImage>;
  profile: aws.iam.InstanceProfile;
  userData: pulumi.Output<string>;
  /** The S3 gateway endpoint the instances reach S3 through (named in the description). */
  s3Endpoint: pulumi.Output<string>;
  tags: Record<string, string>;
}

/**
 * IMDSv2 only with hop limit 1, an encrypted gp3 scratch volume on the image's root device, no public IP,
 * detailed monitoring, and a shutdown from inside (a boot that gives up) that terminates the instance.
 */
function launchTemplate(parent: pulumi.Resource, name: string, t: TemplateInput): aws.ec2.LaunchTemplate {
  return new aws.ec2.LaunchTemplate(
    `${name}-template`,
    {
      description: pulumi.interpolate`MySQL backup verifier (${t.args.server.flavor} ${t.args.server.version}; S3 through ${t.s3Endpoint})`,
      imageId: t.image.id,
      iamInstanceProfile: { arn: t.profile.arn },
      instanceInitiatedShutdownBehavior: "terminate",
      metadataOptions: {
        httpEndpoint: "enabled",
        httpTokens: "required",
        httpPutResponseHopLimit: 1,
        instanceMetadataTags: "disabled",
      },
      blockDeviceMappings: [
        {
          deviceName: t.image.rootDeviceName,
          ebs: {
            volumeSize: t.settings.scratchVolumeGiB,
            ...scratchThroughput(t.settings.scratchVolumeMiBps),
            volumeType: "gp3",
            encrypted: "true",
            deleteOnTermination: "true",
          },
        },
      ],
      networkInterfaces: [
        {
          deviceIndex: 0,
          associatePublicIpAddress: "false",
          deleteOnTermination: "true",
          securityGroups: t.args.securityGroupIds,
        },
      ],
      monitoring: { enabled: true },
      userData: t.userData.apply((u) => Buffer.from(u, "utf8").toString("base64")),
      updateDefaultVersion: true,
      tagSpecifications: [
        { resourceType: "instance", tags: t.tags },
        { resourceType: "volume", tags: t.tags },
      ],
      tags: t.tags,
    },
    { parent },
  );
}
