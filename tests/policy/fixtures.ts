import { pipelineTags } from "../../contracts/tags";
import type { ResourceRecord } from "../../policies/harness";

/**
 * A compliant stack written out by hand as resource registrations shaped like what `@pulumi/aws`
 * 7.48 registers (type tokens and input names from its typings), with ids and outputs as mocks return
 * them. The per-rule tests break it one input at a time; the stack tests do the same with the records
 * of the real program.
 */

const PROJECT = "mysql-backup-pipeline";
/** A fresh tag map per resource: a shared object would let one test's change leak into every resource. */
const tags = () => pipelineTags("mysql-backup-pipeline", "test");

function urnOf(type: string, name: string, parentType?: string): string {
  const chain = parentType ? `${parentType}$${type}` : type;
  return `urn:pulumi:test::${PROJECT}::${chain}::${name}`;
}

function record(
  type: string,
  name: string,
  inputs: Record<string, unknown>,
  outputs: Record<string, unknown> = {},
): ResourceRecord {
  return {
    type,
    name,
    urn: urnOf(type, name, "mysql-backup-pipeline:index:Pipeline"),
    inputs,
    id: `${name}-id`,
    outputs,
  };
}

const BUCKET = "backups-4f2a";
const BUCKET_ARN = `arn:aws:s3:::${BUCKET}`;
const KEY_ARN = "arn:aws:kms:eu-west-1:123456789012:key/backups";
const TOPIC_KEY_ARN = "arn:aws:kms:eu-west-1:123456789012:key/alerts";
const DLQ_ARN = "arn:aws:sqs:eu-west-1:123456789012:verify-dlq";
const TOPIC_ARN = "arn:aws:sns:eu-west-1:123456789012:alerts";

const ec2Trust = JSON.stringify({
  Version: "2012-10-17",
  Statement: [{ Effect: "Allow", Principal: { Service: "ec2.amazonaws.com" }, Action: "sts:AssumeRole" }],
});

/** The compliant stack; a fresh deep copy on every call so tests can change it. */
export function compliantStack(): ResourceRecord[] {
  return structuredClone([
    {
      type: "pulumi:pulumi:Stack",
      name: `${PROJECT}-test`,
      urn: `urn:pulumi:test::${PROJECT}::pulumi:pulumi:Stack::${PROJECT}-test`,
      inputs: {},
    },
    record("aws:kms/key:Key", "backups-key", { enableKeyRotation: true, tags: tags() }, { arn: KEY_ARN }),
    record(
      "aws:s3/bucket:Bucket",
      "backups",
      { bucket: BUCKET, objectLockEnabled: true, tags: tags() },
      { arn: BUCKET_ARN },
    ),
    record(
      "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
      "backups-sse",
      {
        bucket: BUCKET,
        rules: [
          {
            applyServerSideEncryptionByDefault: { sseAlgorithm: "aws:kms", kmsMasterKeyId: KEY_ARN },
            bucketKeyEnabled: true,
          },
        ],
      },
    ),
    record("aws:s3/bucketVersioning:BucketVersioning", "backups-versioning", {
      bucket: BUCKET,
      versioningConfiguration: { status: "Enabled" },
    }),
    record("aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration", "backups-lock", {
      bucket: BUCKET,
      rule: { defaultRetention: { mode: "GOVERNANCE", days: 30 } },
    }),
    record("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "backups-pab", {
      bucket: BUCKET,
      blockPublicAcls: true,
      blockPublicPolicy: true,
      ignorePublicAcls: true,
      restrictPublicBuckets: true,
    }),
    record("aws:s3/bucketOwnershipControls:BucketOwnershipControls", "backups-ownership", {
      bucket: BUCKET,
      rule: { objectOwnership: "BucketOwnerEnforced" },
    }),
    record("aws:s3/bucketPolicy:BucketPolicy", "backups-policy", {
      bucket: BUCKET,
      policy: JSON.stringify({
        Version: "2012-10-17",
        Statement: [
          {
            Sid: "DenyInsecureTransport",
            Effect: "Deny",
            Principal: "*",
            Action: "s3:*",
            Resource: [BUCKET_ARN, `${BUCKET_ARN}/*`],
            Condition: { Bool: { "aws:SecureTransport": "false" } },
          },
          {
            Sid: "DenyOverwritingBackups",
            Effect: "Deny",
            Principal: "*",
            Action: "s3:PutObject",
            Resource: `${BUCKET_ARN}/backups/*`,
            Condition: {
              Null: { "s3:if-none-match": "true" },
              BoolIfExists: { "s3:ObjectCreationOperation": "true" },
            },
          },
        ],
      }),
    }),
    record("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", "backups-lifecycle", {
      bucket: BUCKET,
      rules: [
        {
          id: "abort-multipart",
          status: "Enabled",
          filter: {},
          abortIncompleteMultipartUpload: { daysAfterInitiation: 1 },
        },
        {
          id: "archives",
          status: "Enabled",
          filter: { prefix: "backups/" },
          transitions: [{ days: 30, storageClass: "GLACIER_IR" }],
          expiration: { days: 90 },
          noncurrentVersionExpiration: { noncurrentDays: 7 },
        },
      ],
    }),
    record(
      "aws:sqs/queue:Queue",
      "verify-dlq",
      {
        kmsMasterKeyId: KEY_ARN,
        redriveAllowPolicy: JSON.stringify({
          redrivePermission: "byQueue",
          sourceQueueArns: ["arn:aws:sqs:eu-west-1:123456789012:verify"],
        }),
        tags: tags(),
      },
      { arn: DLQ_ARN, url: "https://sqs.eu-west-1.amazonaws.com/123456789012/verify-dlq" },
    ),
    record("aws:sqs/queue:Queue", "verify", {
      kmsMasterKeyId: KEY_ARN,
      redrivePolicy: JSON.stringify({ deadLetterTargetArn: DLQ_ARN, maxReceiveCount: 3 }),
      visibilityTimeoutSeconds: 7200,
      tags: tags(),
    }),
    record("aws:ec2/launchTemplate:LaunchTemplate", "verifier", {
      imageId: "ami-0123456789abcdef0",
      metadataOptions: { httpEndpoint: "enabled", httpTokens: "required", httpPutResponseHopLimit: 1 },
      blockDeviceMappings: [
        { deviceName: "/dev/xvda", ebs: { encrypted: "true", volumeType: "gp3", volumeSize: 100 } },
      ],
      networkInterfaces: [{ deviceIndex: 0, associatePublicIpAddress: "false", securityGroups: ["sg-1"] }],
      tags: tags(),
    }),
    record("aws:autoscaling/group:Group", "verifier", {
      minSize: 0,
      maxSize: 2,
      tags: Object.entries(tags()).map(([key, value]) => ({ key, value, propagateAtLaunch: true })),
    }),
    record(
      "aws:iam/role:Role",
      "verifier-role",
      { assumeRolePolicy: ec2Trust, tags: tags() },
      { name: "verifier-role-1a2b" },
    ),
    record("aws:iam/instanceProfile:InstanceProfile", "verifier-profile", {
      role: "verifier-role-1a2b",
      tags: tags(),
    }),
    record("aws:iam/rolePolicy:RolePolicy", "verifier-permissions", {
      role: "verifier-role-1a2b",
      policy: JSON.stringify({
        Version: "2012-10-17",
        Statement: [
          {
            Effect: "Allow",
            Action: ["s3:GetObject", "s3:GetObjectVersion"],
            Resource: `${BUCKET_ARN}/backups/*`,
          },
          { Effect: "Allow", Action: "s3:PutObject", Resource: `${BUCKET_ARN}/backups/*/verification.json` },
          {
            Effect: "Allow",
            Action: ["sqs:ReceiveMessage", "sqs:DeleteMessage"],
            Resource: "arn:aws:sqs:eu-west-1:123456789012:verify",
          },
          {
            Effect: "Allow",
            Action: "cloudwatch:PutMetricData",
            Resource: "*",
            Condition: { StringEquals: { "cloudwatch:namespace": "MysqlBackup" } },
          },
        ],
      }),
    }),
    record(
      "aws:kms/key:Key",
      "alerts-key",
      { enableKeyRotation: true, tags: tags() },
      { arn: TOPIC_KEY_ARN },
    ),
    record(
      "aws:sns/topic:Topic",
      "alerts",
      { kmsMasterKeyId: TOPIC_KEY_ARN, tags: tags() },
      { arn: TOPIC_ARN },
    ),
    record("aws:sns/topicSubscription:TopicSubscription", "alerts-email", {
      topic: TOPIC_ARN,
      protocol: "email",
      endpoint: "oncall@example.com",
    }),
    record("aws:cloudwatch/metricAlarm:MetricAlarm", "verification-failed", {
      comparisonOperator: "GreaterThanOrEqualToThreshold",
      evaluationPeriods: 1,
      metricName: "VerificationFailed",
      namespace: "MysqlBackup",
      period: 300,
      statistic: "Sum",
      threshold: 1,
      alarmActions: [TOPIC_ARN],
      tags: tags(),
    }),
    record("aws:cloudwatch/dashboard:Dashboard", "pipeline", {
      dashboardName: "pipeline",
      dashboardBody: "{}",
    }),
  ] satisfies ResourceRecord[]);
}

/** The inputs of the one record of `type` named `name`; throws when the fixture has no such record. */
export function inputsOf(records: ResourceRecord[], type: string, name?: string): Record<string, unknown> {
  const found = records.filter((r) => r.type === type && (name === undefined || r.name === name));
  if (found.length !== 1)
    throw new Error(`expected one ${type} ${name ?? ""} in the records, found ${found.length}`);
  return found[0].inputs;
}
