import { METRIC_NAMESPACE, normalizePrefix, VERDICT_OBJECTS } from "../contracts";

/**
 * The IAM documents of the pipeline as pure functions of ARNs, so the components register exactly
 * what the tests feed to the IAM simulator. Every grant names the key layout from `contracts/keys`.
 */

/** A condition block: operator → key → value(s). */
export type PolicyCondition = Record<string, Record<string, string | string[]>>;

/** One IAM statement, with the fields this pipeline uses. */
export interface PolicyStatement {
  Sid: string;
  Effect: "Allow" | "Deny";
  Principal?: "*" | { AWS?: string | string[]; Service?: string | string[] };
  Action: string | string[];
  Resource?: string | string[];
  Condition?: PolicyCondition;
}

/** A complete policy document. */
export interface PolicyDocument {
  Version: "2012-10-17";
  Statement: PolicyStatement[];
}

/** A document of the given statements. */
export const document = (...statements: PolicyStatement[]): PolicyDocument => ({
  Version: "2012-10-17",
  Statement: statements,
});

/** Objects under `<prefix>/`, the part of the bucket the lifecycle and the verifier cover. */
export function backupObjectsArn(bucketArn: string, prefix: string): string {
  const p = normalizePrefix(prefix);
  return p ? `${bucketArn}/${p}/*` : `${bucketArn}/*`;
}

/**
 * The verdict objects below `<prefix>/` (every name of `VERDICT_OBJECTS`, in every backup and in the binlog
 * archive), which only the verifier's role may write.
 */
export function verdictObjectArns(
  bucketArn: string,
  prefix: string,
  verdictObjects: readonly string[] = VERDICT_OBJECTS,
): string[] {
  const p = normalizePrefix(prefix);
  return verdictObjects.map((name) => `${bucketArn}/${p ? `${p}/` : ""}*/${name}`);
}

/** Where the stack uploads what the verifiers fetch at boot: outside `<prefix>/`, so it never expires. */
export const ARTIFACTS_PREFIX = "artifacts/mysql-backup/";

/**
 * The object key of the verifier bundle. One key, many versions: an upgrade is an update of the same
 * object (a new version, the old one becomes noncurrent and expires once its lock ends), never a delete
 * of a locked version; the launch template names the exact version it boots.
 */
export const BUNDLE_KEY = `${ARTIFACTS_PREFIX}mysql-backup.cjs`;

/** Trust policy letting EC2 instances assume a role. */
export function ec2AssumeRolePolicy(): PolicyDocument {
  return document({
    Sid: "Ec2AssumeRole",
    Effect: "Allow",
    Principal: { Service: "ec2.amazonaws.com" },
    Action: "sts:AssumeRole",
  });
}

/** Trust policy letting S3 replicate with a role. */
export function s3AssumeRolePolicy(): PolicyDocument {
  return document({
    Sid: "S3AssumeRole",
    Effect: "Allow",
    Principal: { Service: "s3.amazonaws.com" },
    Action: "sts:AssumeRole",
  });
}

/** The key policy of the backup key: IAM policies of this account decide (the AWS default, made explicit). */
export function accountKeyPolicy(accountId: string, partition = "aws"): PolicyDocument {
  return document({
    Sid: "EnableIamPolicies",
    Effect: "Allow",
    Principal: { AWS: `arn:${partition}:iam::${accountId}:root` },
    Action: "kms:*",
    Resource: "*",
  });
}

/** The alerting key: IAM decides for the account, and CloudWatch may use it to publish alarms to SNS. */
export function alertKeyPolicy(accountId: string, partition = "aws"): PolicyDocument {
  const base = accountKeyPolicy(accountId, partition);
  return document(...base.Statement, {
    Sid: "AllowCloudWatchToPublish",
    Effect: "Allow",
    Principal: { Service: "cloudwatch.amazonaws.com" },
    Action: ["kms:Decrypt", "kms:GenerateDataKey*"],
    Resource: "*",
    Condition: { StringEquals: { "aws:SourceAccount": accountId } },
  });
}

/** The alert topic's policy: CloudWatch alarms of this account publish; nobody over plain HTTP. */
export function alertTopicPolicy(topicArn: string, accountId: string): PolicyDocument {
  return document(
    {
      Sid: "AllowCloudWatchAlarms",
      Effect: "Allow",
      Principal: { Service: "cloudwatch.amazonaws.com" },
      Action: "sns:Publish",
      Resource: topicArn,
      Condition: { StringEquals: { "aws:SourceAccount": accountId } },
    },
    {
      Sid: "DenyInsecureTransport",
      Effect: "Deny",
      Principal: "*",
      Action: "sns:Publish",
      Resource: topicArn,
      Condition: { Bool: { "aws:SecureTransport": "false" } },
    },
  );
}

/** A queue policy that refuses every request not made over TLS. */
export function queuePolicy(queueArn: string): PolicyDocument {
  return document({
    Sid: "DenyInsecureTransport",
    Effect: "Deny",
    Principal: "*",
    Action: "sqs:*",
    Resource: queueArn,
    Condition: { Bool: { "aws:SecureTransport": "false" } },
  });
}

/** Lets CloudWatch Logs of this account and region encrypt one log group with the key (and IAM decide the rest). */
export function logsKeyPolicy(input: {
  accountId: string;
  region: string;
  logGroupName: string;
  partition?: string;
}): PolicyDocument {
  const partition = input.partition ?? "aws";
  const base = accountKeyPolicy(input.accountId, partition);
  return document(...base.Statement, {
    Sid: "AllowCloudWatchLogs",
    Effect: "Allow",
    Principal: { Service: `logs.${input.region}.amazonaws.com` },
    Action: ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
    Resource: "*",
    Condition: {
      ArnEquals: {
        "kms:EncryptionContext:aws:logs:arn": `arn:${partition}:logs:${input.region}:${input.accountId}:log-group:${input.logGroupName}`,
      },
    },
  });
}

/** Metrics in the pipeline's namespace; PutMetricData has no resource-level permissions. */
export const putMetrics: PolicyStatement = {
  Sid: "PutPipelineMetrics",
  Effect: "Allow",
  Action: "cloudwatch:PutMetricData",
  Resource: "*",
  Condition: { StringEquals: { "cloudwatch:namespace": METRIC_NAMESPACE } },
};

/** KMS use only through S3 in the bucket's region: the host never handles data keys for anything else. */
export function viaS3(region: string): PolicyCondition {
  return { StringEquals: { "kms:ViaService": `s3.${region}.amazonaws.com` } };
}

/**
 * Denies a PutObject whose SSE header is present and differs from `value`. The `Null: false` guard is
 * deliberate: UploadPart and CompleteMultipartUpload carry no SSE header (the upload's encryption is
 * fixed by CreateMultipartUpload), and a deny on a missing header (`Null: true`, or a negated operator,
 * which matches absent keys) would break every multipart upload. A PUT without the header gets the
 * bucket default, SSE-KMS with the same key, so nothing is stored unencrypted or under another key.
 */
export function denyPutUnless(
  sid: string,
  bucketArn: string,
  header: string,
  value: string,
  principal?: "*",
): PolicyStatement {
  return {
    Sid: sid,
    Effect: "Deny",
    ...(principal ? { Principal: principal } : {}),
    Action: "s3:PutObject",
    Resource: `${bucketArn}/*`,
    Condition: { StringNotEquals: { [header]: value }, Null: { [header]: "false" } },
  };
}

/** The SSE headers as S3 condition keys. */
export const SSE_HEADER = "s3:x-amz-server-side-encryption";
export const SSE_KEY_HEADER = "s3:x-amz-server-side-encryption-aws-kms-key-id";

/**
 * The condition of a write that only creates: S3 refuses it (412) when the key exists. PutObject and
 * CompleteMultipartUpload carry `If-None-Match: *`; the parts of a multipart upload (CreateMultipartUpload,
 * UploadPart) accept no conditional header, and S3 marks them `s3:ObjectCreationOperation: false`.
 */
export const CREATE_ONLY: PolicyCondition = { StringEquals: { "s3:if-none-match": "*" } };
/** The parts of a multipart upload, which create nothing until it completes (with `CREATE_ONLY`). */
export const UPLOAD_PARTS: PolicyCondition = { Bool: { "s3:ObjectCreationOperation": "false" } };

/** Inputs of the replication role's policy. */
export interface ReplicationPolicyInput {
  sourceBucketArn: string;
  sourceKeyArn: string;
  destinationBucketArn: string;
  destinationKeyArn: string;
}

/** What S3 needs to copy every version (with its retention) to the off-site bucket and re-encrypt it. */
export function replicationRolePolicy(input: ReplicationPolicyInput): PolicyDocument {
  return document(
    {
      Sid: "ReadReplicationConfiguration",
      Effect: "Allow",
      Action: ["s3:GetReplicationConfiguration", "s3:ListBucket"],
      Resource: input.sourceBucketArn,
    },
    {
      Sid: "ReadSourceVersions",
      Effect: "Allow",
      Action: [
        "s3:GetObjectVersionForReplication",
        "s3:GetObjectVersionAcl",
        "s3:GetObjectVersionTagging",
        "s3:GetObjectRetention",
        "s3:GetObjectLegalHold",
      ],
      Resource: `${input.sourceBucketArn}/*`,
    },
    {
      Sid: "WriteReplicas",
      Effect: "Allow",
      Action: [
        "s3:ReplicateObject",
        "s3:ReplicateDelete",
        "s3:ReplicateTags",
        "s3:ObjectOwnerOverrideToBucketOwner",
      ],
      Resource: `${input.destinationBucketArn}/*`,
    },
    { Sid: "DecryptSource", Effect: "Allow", Action: "kms:Decrypt", Resource: input.sourceKeyArn },
    {
      Sid: "EncryptReplicas",
      Effect: "Allow",
      Action: ["kms:Encrypt", "kms:GenerateDataKey"],
      Resource: input.destinationKeyArn,
    },
  );
}
