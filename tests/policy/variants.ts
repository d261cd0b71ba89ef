import type { ResourceRecord } from "../../policies/harness";
import { statementsOf } from "../../policies/rules/documents";
import { BACKUP_TAMPERING_ACTIONS } from "../../policies/rules/iam";

/**
 * For every rule, a change of one input of the real stack's records that breaks exactly that rule.
 * Shared by the offline-engine tests and the tests against the served pack.
 */

/** Changes records in place. */
export type Change = (records: ResourceRecord[]) => void;

function all(records: ResourceRecord[], type: string): ResourceRecord[] {
  return records.filter((r) => r.type === type);
}

function first(
  records: ResourceRecord[],
  type: string,
  where: (r: ResourceRecord) => boolean = () => true,
): ResourceRecord {
  const found = all(records, type).find(where);
  if (!found) throw new Error(`the stack registers no ${type} to change for this variant`);
  return found;
}

function documentOf(record: ResourceRecord): { Statement: Record<string, unknown>[] } {
  const policy = record.inputs.policy;
  return (typeof policy === "string" ? JSON.parse(policy) : structuredClone(policy)) as {
    Statement: Record<string, unknown>[];
  };
}

/** The role policies of roles that EC2 instances assume. */
function hostRolePolicy(records: ResourceRecord[]): ResourceRecord {
  const hostRoles = all(records, "aws:iam/role:Role").filter((role) =>
    statementsOf(role.inputs.assumeRolePolicy).some((s) => s.principals.includes("ec2.amazonaws.com")),
  );
  const ids = new Set(hostRoles.flatMap((r) => [r.id, r.outputs?.name, r.outputs?.arn]));
  return first(records, "aws:iam/rolePolicy:RolePolicy", (p) => ids.has(p.inputs.role as string));
}

function addStatement(record: ResourceRecord, statement: Record<string, unknown>): void {
  const document = documentOf(record);
  document.Statement = [...[document.Statement].flat(), statement];
  record.inputs.policy = JSON.stringify(document);
}

/** `[rule, change]` pairs: the change applies to a copy of the real records. */
export const realStackVariants: [rule: string, change: Change][] = [
  [
    "s3-bucket-encrypted-with-cmk",
    (r) => {
      const rules = first(
        r,
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
      ).inputs.rules as Record<string, Record<string, unknown>>[];
      rules[0].applyServerSideEncryptionByDefault = { sseAlgorithm: "AES256" };
    },
  ],
  [
    "s3-bucket-versioning-enabled",
    (r) => {
      first(r, "aws:s3/bucketVersioning:BucketVersioning").inputs.versioningConfiguration = {
        status: "Suspended",
      };
    },
  ],
  [
    "s3-bucket-object-lock-retention",
    (r) => {
      first(r, "aws:s3/bucket:Bucket").inputs.objectLockEnabled = false;
    },
  ],
  [
    "s3-bucket-public-access-blocked",
    (r) => {
      first(r, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock").inputs.blockPublicPolicy = false;
    },
  ],
  [
    "s3-bucket-policy-denies-insecure-transport",
    (r) => {
      const policy = first(r, "aws:s3/bucketPolicy:BucketPolicy");
      const document = documentOf(policy);
      document.Statement = [document.Statement]
        .flat()
        .filter((s) => !JSON.stringify(s.Condition ?? {}).includes("aws:SecureTransport"));
      policy.inputs.policy = JSON.stringify(document);
    },
  ],
  [
    "s3-bucket-policy-write-once",
    (r) => {
      for (const policy of all(r, "aws:s3/bucketPolicy:BucketPolicy")) {
        const document = documentOf(policy);
        document.Statement = [document.Statement]
          .flat()
          .filter((s) => !JSON.stringify(s.Condition ?? {}).includes("s3:if-none-match"));
        policy.inputs.policy = JSON.stringify(document);
      }
    },
  ],
  [
    "s3-bucket-lifecycle-expires",
    (r) => {
      const lifecycle = first(r, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration");
      for (const rule of lifecycle.inputs.rules as Record<string, unknown>[])
        delete rule.abortIncompleteMultipartUpload;
    },
  ],
  [
    "s3-binlog-retention-covers-snapshots",
    (r) => {
      // Someone keeps the binlog archive a week to save money, while snapshots stay longer.
      const lifecycle = first(r, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration");
      (lifecycle.inputs.rules as Record<string, unknown>[]).push({
        id: "binlogs-short",
        status: "Enabled",
        filter: { prefix: "backups/orders/binlogs/" },
        expiration: { days: 7 },
      });
    },
  ],
  [
    "sqs-queue-encrypted",
    (r) => {
      const queue = first(r, "aws:sqs/queue:Queue");
      delete queue.inputs.kmsMasterKeyId;
      delete queue.inputs.sqsManagedSseEnabled;
    },
  ],
  [
    "sqs-queue-has-dlq",
    (r) => {
      delete first(r, "aws:sqs/queue:Queue", (q) => q.inputs.redrivePolicy !== undefined).inputs
        .redrivePolicy;
    },
  ],
  [
    "ec2-launch-template-imdsv2",
    (r) => {
      (
        first(r, "aws:ec2/launchTemplate:LaunchTemplate").inputs.metadataOptions as Record<string, unknown>
      ).httpTokens = "optional";
    },
  ],
  [
    "ec2-launch-template-encrypted-volumes",
    (r) => {
      const mappings = first(r, "aws:ec2/launchTemplate:LaunchTemplate").inputs.blockDeviceMappings as Record<
        string,
        Record<string, unknown>
      >[];
      mappings[0].ebs.encrypted = "false";
    },
  ],
  [
    "ec2-launch-template-no-public-ip",
    (r) => {
      const interfaces = first(r, "aws:ec2/launchTemplate:LaunchTemplate").inputs.networkInterfaces as Record<
        string,
        unknown
      >[];
      interfaces[0].associatePublicIpAddress = "true";
    },
  ],
  [
    "iam-no-star-on-star",
    (r) => {
      addStatement(hostRolePolicy(r), {
        Effect: "Allow",
        NotAction: BACKUP_TAMPERING_ACTIONS,
        Resource: "*",
      });
    },
  ],
  [
    "iam-host-role-cannot-tamper-with-backups",
    (r) => {
      addStatement(hostRolePolicy(r), {
        Effect: "Allow",
        Action: "s3:DeleteObjectVersion",
        Resource: "arn:aws:s3:::any-bucket/*",
      });
    },
  ],
  [
    "cloudwatch-alarm-has-action",
    (r) => {
      first(r, "aws:cloudwatch/metricAlarm:MetricAlarm").inputs.alarmActions = [];
    },
  ],
  [
    "sns-topic-encrypted",
    (r) => {
      delete first(r, "aws:sns/topic:Topic").inputs.kmsMasterKeyId;
    },
  ],
  [
    "required-tags",
    (r) => {
      delete first(r, "aws:s3/bucket:Bucket").inputs.tags;
    },
  ],
];
