import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { stringify as toYaml } from "yaml";
import { parseVerifyConfig, schemaFor, type ServerFlavor, type VerifyConfig } from "../contracts";
import {
  CONFIG_DIR,
  INSTALLED_BINARY,
  UNIT_DIR,
  VERIFIER_SERVICE,
  VERIFY_CONFIG_PATH,
  verifierServiceUnit,
} from "../contracts/units";
import { artifactKey, ec2AssumeRolePolicy, verifierRolePolicy } from "./iam";
import type { HostBundle, PipelineEndpoints } from "./replicaAgent";
import { ConfigError, requireInteger, requireMatch } from "./validation";

/** The server the backups come from; the verifier installs the same flavor and major version. */
export interface ServerRelease {
  flavor: ServerFlavor;
  /** Major version: MariaDB `10.6`, `10.11`, `11.4`…; MySQL `8.0` or `8.4`. */
  version: string;
}

/** How the verifier's AMI is chosen: by id, or the newest image of an owner matching a name. */
export interface AmiSelector {
  /** A fixed AMI id. Defaults to a lookup. */
  id?: string;
  /** The AMI owner of the lookup. Defaults to "136693071363" (Debian). */
  owner?: string;
  /** The AMI name pattern of the lookup. Defaults to "debian-12-amd64-*". */
  namePattern?: string;
}

/** Arguments of {@link VerifierFleet}. */
export interface VerifierFleetArgs extends PipelineEndpoints {
  /** The server flavor and version to restore into. */
  server: ServerRelease;
  /** Private subnets the verifiers run in (no public IP is ever assigned). */
  subnetIds: pulumi.Input<string>[];
  /** Security groups of the verifiers (egress to S3, SQS, CloudWatch and package mirrors). */
  securityGroupIds: pulumi.Input<string>[];
  /** The EC2 instance type of the verifiers. Defaults to "m6i.large". */
  instanceType?: string;
  /**
   * Upper bound of the fleet. It scales between 0 and this: one more instance per 5 minutes while
   * messages wait, back to 0 after `idleMinutes` with nothing waiting or in flight. Defaults to 2.
   */
  maxInstances?: number;
  /**
   * Size of the encrypted gp3 root volume, which holds the scratch restores: make it larger than the
   * largest restored datadir plus its archive. Defaults to 200.
   */
  scratchVolumeGiB?: number;
  /** Device name of the AMI's root volume. Defaults to "/dev/xvda" (Debian 12). */
  rootDeviceName?: string;
  /**
   * The AMI. A new image (or a new bundle) changes the launch template, which rolls the group through
   * an instance refresh. Defaults to the newest Debian 12 amd64 image.
   */
  ami?: AmiSelector;
  /** Node.js major version installed from NodeSource. Defaults to 20. */
  nodeMajorVersion?: number;
  /** Minutes of an empty queue before the fleet scales back to zero. Defaults to 15. */
  idleMinutes?: number;
  /** The verification queue's name (its metrics' dimension). */
  queueName: pulumi.Input<string>;
  /** Visibility timeout the verifier receives with (the queue's). */
  visibilityTimeoutSeconds: number;
  /** The bundle the stack uploads (content-addressed) for the verifiers to fetch. */
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
  | "instanceType"
  | "maxInstances"
  | "scratchVolumeGiB"
  | "idleMinutes"
  | "ami"
>;

/**
 * {@link VerifierSpec} as JSON. The stack config's `verifier` key is validated with it and VerifierFleet
 * checks its arguments against its bounds, so each bound is stated here only.
 */
export const verifierSpecSchema = schemaFor<pulumi.Unwrap<VerifierSpec>>()({
  type: "object",
  additionalProperties: false,
  required: ["subnetIds", "securityGroupIds"],
  properties: {
    subnetIds: { type: "array", minItems: 1, items: { type: "string", pattern: "^subnet-[0-9a-f]+$" } },
    securityGroupIds: { type: "array", minItems: 1, items: { type: "string", pattern: "^sg-[0-9a-f]+$" } },
    instanceType: { type: "string", pattern: "^[a-z0-9-]+\\.[a-z0-9]+$" },
    maxInstances: { type: "integer", minimum: 1, maximum: 100 },
    scratchVolumeGiB: { type: "integer", minimum: 20, maximum: 16384 },
    idleMinutes: { type: "integer", minimum: 5, maximum: 1440 },
    ami: {
      type: "object",
      additionalProperties: false,
      properties: {
        id: { type: "string", pattern: "^ami-[0-9a-f]{8,17}$" },
        owner: { type: "string", pattern: "^(\\d{12}|amazon|self|aws-marketplace)$" },
        namePattern: { type: "string", minLength: 1 },
      },
    },
  },
});

/** NodeSource's majors the host scripts run on; not a stack setting, so not in {@link verifierSpecSchema}. */
const NODE_MAJOR_VERSIONS = { minimum: 20, maximum: 99 };

/** Where the verifier restores; lives on the scratch (root) volume. */
export const SCRATCH_DIR = "/var/lib/mysql-verify";

/** Renders verify.json; it passes the contract's parser or this throws, naming the key. */
export function renderVerifyConfig(i: {
  queueUrl: string;
  visibilityTimeoutSeconds: number;
  region: string;
  keyArn: string;
}): VerifyConfig {
  return parseVerifyConfig({
    sqs: { queueUrl: i.queueUrl, waitTimeSeconds: 20, visibilityTimeoutSeconds: i.visibilityTimeoutSeconds },
    scratchDir: SCRATCH_DIR,
    // The key ARN, as the bucket policy compares the SSE key header against it. Verdict tags on the
    // backup's objects (`verified=true|false`): the role may set only that tag key.
    s3: { kmsKeyId: i.keyArn, tagObjects: true },
    mysqld: { user: "mysql" },
    aws: { region: i.region },
    metrics: { sink: "cloudwatch" },
  } satisfies VerifyConfig);
}

/** An APT source in cloud-init's format. */
interface AptSource {
  source: string;
  keyid: string;
  keyserver: string;
}

const KEYSERVER = "keyserver.ubuntu.com";

/** The APT sources and package names that install a server release on Debian 12. */
export function serverPackages(server: ServerRelease): {
  sources: Record<string, AptSource>;
  packages: string[];
} {
  if (server.flavor === "mariadb") {
    // Debian 12 ships 10.11 itself; any other release comes from MariaDB's own repository.
    if (server.version === "10.11") return { sources: {}, packages: ["mariadb-server", "mariadb-client"] };
    return {
      sources: {
        "mariadb.list": {
          source: `deb [signed-by=$KEY_FILE] https://dlm.mariadb.com/repo/mariadb-server/${server.version}/repo/debian bookworm main`,
          keyid: "177F4010FE56CA3336300305F1656F24C74CD1D8",
          keyserver: KEYSERVER,
        },
      },
      packages: ["mariadb-server", "mariadb-client"],
    };
  }
  const component = server.version === "8.4" ? "mysql-8.4-lts" : `mysql-${server.version}`;
  return {
    sources: {
      "mysql.list": {
        source: `deb [signed-by=$KEY_FILE] http://repo.mysql.com/apt/debian bookworm ${component}`,
        keyid: "BCA43417C3B485DD128EC6D4B7B3B788A8D3785C",
        keyserver: KEYSERVER,
      },
    },
    packages: ["mysql-server", "mysql-client"],
  };
}

/** The values the verifier's cloud-init user-data is rendered from. */
export interface UserDataInput {
  server: ServerRelease;
  nodeMajorVersion: number;
  bucketName: string;
  bundleSha256: string;
  verifyConfig: VerifyConfig;
}

/** Downloads the bundle with retries and checks its sha256; powers off on failure. */
function fetchBundleScript(url: string, download: string, sha256: string): string {
  return [
    `for attempt in 1 2 3 4 5 6; do aws s3 cp --only-show-errors ${url} ${download} && break; sleep 10; done`,
    `echo "${sha256}  ${download}" | sha256sum -c --quiet - || { echo "mysql-backup bundle missing or corrupt: ${url}" >&2; poweroff; exit 1; }`,
  ].join("; ");
}

/**
 * cloud-init user-data: installs Node and the matching server, writes verify.json and the unit,
 * fetches the bundle from its content-addressed key and checks its sha256 before installing it,
 * keeps the distribution's own server stopped (only scratch servers run), starts the verifier.
 */
export function renderUserData(i: UserDataInput): string {
  const server = serverPackages(i.server);
  const download = `${INSTALLED_BINARY}.download`;
  const cloudConfig = {
    package_update: true,
    apt: {
      sources: {
        "nodesource.list": {
          source: `deb [signed-by=$KEY_FILE] https://deb.nodesource.com/node_${i.nodeMajorVersion}.x nodistro main`,
          keyid: "6F71F525282841EEDAF851B42F59B5F99B1BE0B4",
          keyserver: KEYSERVER,
        },
        ...server.sources,
      },
    },
    packages: ["nodejs", ...server.packages, "awscli", "zstd", "tar"],
    write_files: [
      {
        path: VERIFY_CONFIG_PATH,
        owner: "root:root",
        permissions: "0640",
        content: JSON.stringify(i.verifyConfig, null, 2) + "\n",
      },
      {
        path: `${UNIT_DIR}/${VERIFIER_SERVICE}`,
        owner: "root:root",
        permissions: "0644",
        content: verifierServiceUnit(),
      },
    ],
    runcmd: [
      ["sh", "-c", "systemctl disable --now mariadb.service mysql.service 2>/dev/null || true"],
      ["chmod", "0750", CONFIG_DIR],
      ["install", "-d", "-m", "0700", SCRATCH_DIR],
      // Retried (IAM and the network can lag at boot); if the bundle never arrives or its hash is
      // wrong, the instance powers off so the Auto Scaling group replaces it instead of idling.
      [
        "sh",
        "-c",
        fetchBundleScript(`s3://${i.bucketName}/${artifactKey(i.bundleSha256)}`, download, i.bundleSha256),
      ],
      ["install", "-o", "root", "-g", "root", "-m", "0755", download, INSTALLED_BINARY],
      ["rm", "-f", download],
      ["systemctl", "daemon-reload"],
      ["systemctl", "enable", "--now", VERIFIER_SERVICE],
    ],
  };
  return `#cloud-config\n${toYaml(cloudConfig, { lineWidth: 0 })}`;
}

/** The fleet's settings with every default applied and every bound checked. */
interface FleetSettings {
  maxInstances: number;
  scratchVolumeGiB: number;
  idleMinutes: number;
  nodeMajorVersion: number;
}

/** Applies the defaults of {@link VerifierFleetArgs}; throws a ConfigError naming the first bad field. */
function resolveFleetSettings(args: VerifierFleetArgs): FleetSettings {
  const spec = verifierSpecSchema.properties;
  const settings = {
    maxInstances: requireInteger("verifier.maxInstances", args.maxInstances ?? 2, spec.maxInstances),
    scratchVolumeGiB: requireInteger(
      "verifier.scratchVolumeGiB",
      args.scratchVolumeGiB ?? 200,
      spec.scratchVolumeGiB,
    ),
    idleMinutes: requireInteger("verifier.idleMinutes", args.idleMinutes ?? 15, spec.idleMinutes),
    nodeMajorVersion: requireInteger(
      "verifier.nodeMajorVersion",
      args.nodeMajorVersion ?? 20,
      NODE_MAJOR_VERSIONS,
    ),
  };
  if (args.subnetIds.length === 0)
    throw new ConfigError("verifier.subnetIds", "must list at least one private subnet");
  if (args.ami?.id) {
    const amiId = new RegExp(spec.ami.properties.id.pattern);
    requireMatch("verifier.ami.id", args.ami.id, amiId, "an AMI id (ami-…)");
  }
  return settings;
}

/**
 * The verifier fleet: a launch template (IMDSv2 only, hop limit 1, encrypted gp3, no public IP,
 * detailed monitoring, cloud-init), an Auto Scaling group in private subnets from 0 to N that grows
 * while messages wait and returns to zero when the queue is idle, refreshed when the template
 * changes, and an instance role with exactly the verifier's permissions.
 */
export class VerifierFleet extends pulumi.ComponentResource {
  /** The verifier instances' role. */
  readonly role: aws.iam.Role;
  /** The template every verifier starts from. */
  readonly launchTemplate: aws.ec2.LaunchTemplate;
  /** The Auto Scaling group (0 to `maxInstances`). */
  readonly group: aws.autoscaling.Group;
  /** ARN of the verifier role. */
  readonly roleArn: pulumi.Output<string>;
  /** Name of the Auto Scaling group. */
  readonly groupName: pulumi.Output<string>;
  /** The rendered cloud-init user-data (plain text). */
  readonly userData: pulumi.Output<string>;
  /** The S3 key of the bundle the verifiers fetch. */
  readonly artifactKey: string;

  constructor(name: string, args: VerifierFleetArgs, opts?: pulumi.ComponentResourceOptions) {
    super("mysql-backup-pipeline:index:VerifierFleet", name, {}, opts);
    const settings = resolveFleetSettings(args);
    const tags = args.tags ?? {};

    const { role, profile } = instanceRole(this, name, args, tags);
    this.role = role;
    this.artifactKey = artifactKey(args.bundle.sha256);
    const bundle = bundleObject(this, name, args, this.artifactKey, tags);
    this.userData = userData(args, settings.nodeMajorVersion);
    this.launchTemplate = launchTemplate(this, name, {
      args,
      settings,
      imageId: imageId(this, args.ami),
      profile,
      userData: this.userData,
      bundle,
      tags,
    });
    this.group = autoScalingGroup(
      this,
      name,
      this.launchTemplate,
      args.subnetIds,
      settings.maxInstances,
      tags,
    );
    scaleOutWhileWaiting(this, name, this.group, args.queueName, tags);
    scaleToZeroWhenIdle(this, name, this.group, args.queueName, settings.idleMinutes, tags);

    this.roleArn = this.role.arn;
    this.groupName = this.group.name;
    this.registerOutputs({
      roleArn: this.roleArn,
      groupName: this.groupName,
      launchTemplateId: this.launchTemplate.id,
    });
  }
}

/** The instances' role, with exactly the verifier's permissions, and its instance profile. */
function instanceRole(
  parent: pulumi.Resource,
  name: string,
  args: VerifierFleetArgs,
  tags: Record<string, string>,
): { role: aws.iam.Role; profile: aws.iam.InstanceProfile } {
  const role = new aws.iam.Role(
    `${name}-role`,
    {
      description: "MySQL backup verifier: restores and checks backups",
      assumeRolePolicy: JSON.stringify(ec2AssumeRolePolicy()),
      tags,
    },
    { parent },
  );
  new aws.iam.RolePolicy(
    `${name}-policy`,
    {
      role: role.id,
      policy: pulumi
        .all([args.bucketArn, args.keyArn, args.queueArn, args.region])
        .apply(([bucketArn, keyArn, queueArn, region]) =>
          JSON.stringify(verifierRolePolicy({ bucketArn, keyArn, queueArn, region, prefix: args.prefix })),
        ),
    },
    { parent },
  );
  const profile = new aws.iam.InstanceProfile(`${name}-profile`, { role: role.name, tags }, { parent });
  return { role, profile };
}

/** The host-script bundle, uploaded under its content-addressed key for the instances to fetch. */
function bundleObject(
  parent: pulumi.Resource,
  name: string,
  args: VerifierFleetArgs,
  key: string,
  tags: Record<string, string>,
): aws.s3.BucketObjectv2 {
  return new aws.s3.BucketObjectv2(
    `${name}-bundle`,
    {
      bucket: args.bucketName,
      key,
      source: new pulumi.asset.FileAsset(args.bundle.path),
      contentType: "application/javascript",
      serverSideEncryption: "aws:kms",
      kmsKeyId: args.keyArn,
      // Uploads to a bucket with a default object lock retention must carry a checksum.
      checksumAlgorithm: "SHA256",
      tags,
    },
    { parent },
  );
}

/** The instances' cloud-init user-data, with their verify.json inside. */
function userData(args: VerifierFleetArgs, nodeMajorVersion: number): pulumi.Output<string> {
  return pulumi
    .all([args.bucketName, args.queueUrl, args.region, args.keyArn])
    .apply(([bucketName, queueUrl, region, keyArn]) =>
      renderUserData({
        server: args.server,
        nodeMajorVersion,
        bucketName,
        bundleSha256: args.bundle.sha256,
        verifyConfig: renderVerifyConfig({
          queueUrl,
          visibilityTimeoutSeconds: args.visibilityTimeoutSeconds,
          region,
          keyArn,
        }),
      }),
    );
}

/** The pinned AMI, or the newest image of the owner whose name matches. */
function imageId(parent: pulumi.Resource, ami: AmiSelector | undefined): pulumi.Output<string> {
  if (ami?.id) return pulumi.output(ami.id);
  return aws.ec2
    .getAmiOutput(
      {
        owners: [ami?.owner ?? "136693071363"],
        mostRecent: true,
        filters: [
          { name: "name", values: [ami?.namePattern ?? "debian-12-amd64-*"] },
          { name: "state", values: ["available"] },
        ],
      },
      { parent },
    )
    .apply((image) => image.id);
}

/** What the launch template is built from. */
interface TemplateInput {
  args: VerifierFleetArgs;
  settings: FleetSettings;
  imageId: pulumi.Output<string>;
  profile: aws.iam.InstanceProfile;
  userData: pulumi.Output<string>;
  /** The uploaded bundle, which must exist before any instance boots. */
  bundle: aws.s3.BucketObjectv2;
  tags: Record<string, string>;
}

/** IMDSv2 only with hop limit 1, an encrypted gp3 scratch volume, no public IP, detailed monitoring. */
function launchTemplate(parent: pulumi.Resource, name: string, t: TemplateInput): aws.ec2.LaunchTemplate {
  return new aws.ec2.LaunchTemplate(
    `${name}-template`,
    {
      description: `MySQL backup verifier (${t.args.server.flavor} ${t.args.server.version})`,
      imageId: t.imageId,
      instanceType: t.args.instanceType ?? "m6i.large",
      iamInstanceProfile: { arn: t.profile.arn },
      metadataOptions: {
        httpEndpoint: "enabled",
        httpTokens: "required",
        httpPutResponseHopLimit: 1,
        instanceMetadataTags: "disabled",
      },
      blockDeviceMappings: [
        {
          deviceName: t.args.rootDeviceName ?? "/dev/xvda",
          ebs: {
            volumeSize: t.settings.scratchVolumeGiB,
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
    { parent, dependsOn: [t.bundle] },
  );
}

/** From 0 to `maxInstances` in the private subnets; a new template version rolls every instance. */
function autoScalingGroup(
  parent: pulumi.Resource,
  name: string,
  template: aws.ec2.LaunchTemplate,
  subnetIds: pulumi.Input<string>[],
  maxInstances: number,
  tags: Record<string, string>,
): aws.autoscaling.Group {
  return new aws.autoscaling.Group(
    `${name}-group`,
    {
      minSize: 0,
      maxSize: maxInstances,
      vpcZoneIdentifiers: subnetIds,
      launchTemplate: { id: template.id, version: template.latestVersion.apply(String) },
      healthCheckType: "EC2",
      healthCheckGracePeriod: 600,
      instanceRefresh: { strategy: "Rolling", preferences: { minHealthyPercentage: 0 } },
      tags: Object.entries(tags).map(([key, value]) => ({ key, value, propagateAtLaunch: true })),
    },
    { parent },
  );
}

/** One more instance per 5-minute cooldown while messages wait. */
function scaleOutWhileWaiting(
  parent: pulumi.Resource,
  name: string,
  group: aws.autoscaling.Group,
  queueName: pulumi.Input<string>,
  tags: Record<string, string>,
): void {
  const scaleOut = new aws.autoscaling.Policy(
    `${name}-scale-out`,
    {
      autoscalingGroupName: group.name,
      policyType: "SimpleScaling",
      adjustmentType: "ChangeInCapacity",
      scalingAdjustment: 1,
      cooldown: 300,
    },
    { parent },
  );
  new aws.cloudwatch.MetricAlarm(
    `${name}-messages-waiting`,
    {
      alarmDescription: "Backups wait for verification: grow the verifier fleet",
      namespace: "AWS/SQS",
      metricName: "ApproximateNumberOfMessagesVisible",
      dimensions: { QueueName: queueName },
      statistic: "Maximum",
      period: 60,
      evaluationPeriods: 1,
      comparisonOperator: "GreaterThanOrEqualToThreshold",
      threshold: 1,
      treatMissingData: "notBreaching",
      alarmActions: [scaleOut.arn],
      tags,
    },
    { parent },
  );
}

/** Back to zero instances after `idleMinutes` with no message waiting or in flight. */
function scaleToZeroWhenIdle(
  parent: pulumi.Resource,
  name: string,
  group: aws.autoscaling.Group,
  queueName: pulumi.Input<string>,
  idleMinutes: number,
  tags: Record<string, string>,
): void {
  const scaleIn = new aws.autoscaling.Policy(
    `${name}-scale-to-zero`,
    {
      autoscalingGroupName: group.name,
      policyType: "SimpleScaling",
      adjustmentType: "ExactCapacity",
      scalingAdjustment: 0,
      cooldown: 300,
    },
    { parent },
  );
  const sqsMetric = (id: string, metricName: string): aws.types.input.cloudwatch.MetricAlarmMetricQuery => ({
    id,
    returnData: false,
    metric: {
      namespace: "AWS/SQS",
      metricName,
      dimensions: { QueueName: queueName },
      period: 60,
      stat: "Maximum",
    },
  });
  new aws.cloudwatch.MetricAlarm(
    `${name}-queue-idle`,
    {
      alarmDescription: `No message waiting or in flight for ${idleMinutes} minutes: scale the verifier fleet to zero`,
      metricQueries: [
        sqsMetric("visible", "ApproximateNumberOfMessagesVisible"),
        sqsMetric("inflight", "ApproximateNumberOfMessagesNotVisible"),
        {
          id: "pending",
          expression: "visible + inflight",
          label: "Messages waiting or in flight",
          returnData: true,
        },
      ],
      evaluationPeriods: idleMinutes,
      comparisonOperator: "LessThanOrEqualToThreshold",
      threshold: 0,
      // SQS stops publishing metrics for a queue that stays empty: silence means idle here.
      treatMissingData: "breaching",
      alarmActions: [scaleIn.arn],
      tags,
    },
    { parent },
  );
}
