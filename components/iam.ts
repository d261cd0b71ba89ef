import { clusterPrefix, METRIC_NAMESPACE, normalizePrefix, VERIFICATION_OBJECT } from "../contracts";

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

const document = (...statements: PolicyStatement[]): PolicyDocument => ({
  Version: "2012-10-17",
  Statement: statements,
});

/** Objects under `<prefix>/`, the part of the bucket the lifecycle and the verifier cover. */
export function backupObjectsArn(bucketArn: string, prefix: string): string {
  const p = normalizePrefix(prefix);
  return p ? `${bucketArn}/${p}/*` : `${bucketArn}/*`;
}

/** Where the stack uploads the verifier bundle; content-addressed by its sha256. */
export const ARTIFACTS_PREFIX = "artifacts/mysql-backup/";

/** The object key of a bundle with the given sha256. */
export function artifactKey(sha256: string): string {
  return `${ARTIFACTS_PREFIX}${sha256}.cjs`;
}

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

/** Inputs of the backup bucket's policy. */
export interface BucketPolicyInput {
  bucketArn: string;
  keyArn: string;
}

/**
 * Denies a PutObject whose SSE header is present and differs from `value`. The `Null: false` guard is
 * deliberate: UploadPart and CompleteMultipartUpload carry no SSE header (the upload's encryption is
 * fixed by CreateMultipartUpload), and a deny on a missing header (`Null: true`, or a negated operator,
 * which matches absent keys) would break every multipart upload. A PUT without the header gets the
 * bucket default, SSE-KMS with the same key, so nothing is stored unencrypted or under another key.
 */
function denyPutUnless(
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

const SSE_HEADER = "s3:x-amz-server-side-encryption";
const SSE_KEY_HEADER = "s3:x-amz-server-side-encryption-aws-kms-key-id";

/** The bucket policy: TLS only (and at least 1.2), and no upload that asks for other encryption or another key. */
export function backupBucketPolicy({ bucketArn, keyArn }: BucketPolicyInput): PolicyDocument {
  const everything = [bucketArn, `${bucketArn}/*`];
  return document(
    {
      Sid: "DenyInsecureTransport",
      Effect: "Deny",
      Principal: "*",
      Action: "s3:*",
      Resource: everything,
      Condition: { Bool: { "aws:SecureTransport": "false" } },
    },
    {
      Sid: "DenyOutdatedTls",
      Effect: "Deny",
      Principal: "*",
      Action: "s3:*",
      Resource: everything,
      Condition: { NumericLessThan: { "s3:TlsVersion": "1.2" } },
    },
    denyPutUnless("DenyEncryptionOtherThanKms", bucketArn, SSE_HEADER, "aws:kms", "*"),
    denyPutUnless("DenyOtherKmsKeys", bucketArn, SSE_KEY_HEADER, keyArn, "*"),
  );
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

const putMetrics: PolicyStatement = {
  Sid: "PutPipelineMetrics",
  Effect: "Allow",
  Action: "cloudwatch:PutMetricData",
  // PutMetricData has no resource-level permissions; the namespace condition is the only scope.
  Resource: "*",
  Condition: { StringEquals: { "cloudwatch:namespace": METRIC_NAMESPACE } },
};

/** KMS use only through S3 in the bucket's region: the host never handles data keys for anything else. */
function viaS3(region: string): PolicyCondition {
  return { StringEquals: { "kms:ViaService": `s3.${region}.amazonaws.com` } };
}

/** Inputs of a replica's role policy. */
export interface ReplicaPolicyInput {
  bucketArn: string;
  keyArn: string;
  queueArn: string;
  region: string;
  prefix: string;
  cluster: string;
}

/**
 * A replica uploads its cluster's backups and announces them; it can neither read nor delete.
 * Multipart uploads need AbortMultipartUpload and ListMultipartUploadParts on the same keys, and
 * SSE-KMS multipart uploads need kms:Decrypt (S3 decrypts the data key to assemble the parts).
 */
export function replicaRolePolicy(input: ReplicaPolicyInput): PolicyDocument {
  const ownObjects = `${input.bucketArn}/${clusterPrefix(input.prefix, input.cluster)}*`;
  return document(
    {
      Sid: "UploadOwnClusterBackups",
      Effect: "Allow",
      Action: ["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
      Resource: ownObjects,
    },
    // Defence in depth beside the bucket policy; two statements because keys within one operator AND.
    denyPutUnless("DenyUploadsWithOtherEncryption", input.bucketArn, SSE_HEADER, "aws:kms"),
    denyPutUnless("DenyUploadsWithOtherKeys", input.bucketArn, SSE_KEY_HEADER, input.keyArn),
    { Sid: "AnnounceBackups", Effect: "Allow", Action: "sqs:SendMessage", Resource: input.queueArn },
    // `mysql-backup check` proves the queue answers without sending a message a verifier would take.
    { Sid: "CheckQueue", Effect: "Allow", Action: "sqs:GetQueueAttributes", Resource: input.queueArn },
    putMetrics,
    {
      Sid: "EncryptWithBucketKey",
      Effect: "Allow",
      Action: ["kms:GenerateDataKey", "kms:Encrypt", "kms:Decrypt"],
      Resource: input.keyArn,
      Condition: viaS3(input.region),
    },
  );
}

/** Inputs of the verifier's role policy. */
export interface VerifierPolicyInput {
  bucketArn: string;
  keyArn: string;
  queueArn: string;
  region: string;
  prefix: string;
}

/**
 * The verifier reads backups and the stack's artifacts, writes only `verification.json`, tags
 * backups with their verdict, and consumes the queue.
 */
export function verifierRolePolicy(input: VerifierPolicyInput): PolicyDocument {
  const backups = backupObjectsArn(input.bucketArn, input.prefix);
  const prefix = normalizePrefix(input.prefix);
  return document(
    {
      Sid: "ReadBackupsAndArtifacts",
      Effect: "Allow",
      Action: "s3:GetObject",
      Resource: [backups, `${input.bucketArn}/${ARTIFACTS_PREFIX}*`],
    },
    {
      Sid: "ListBackups",
      Effect: "Allow",
      Action: "s3:ListBucket",
      Resource: input.bucketArn,
      Condition: { StringLike: { "s3:prefix": prefix ? [`${prefix}/*`, `${prefix}/`] : ["*"] } },
    },
    {
      Sid: "WriteVerificationReports",
      Effect: "Allow",
      Action: "s3:PutObject",
      Resource: backups.replace(/\*$/, `*/${VERIFICATION_OBJECT}`),
    },
    {
      Sid: "TagVerdicts",
      Effect: "Allow",
      Action: "s3:PutObjectTagging",
      Resource: backups,
      Condition: { "ForAllValues:StringEquals": { "s3:RequestObjectTagKeys": ["verified"] } },
    },
    {
      Sid: "ConsumeVerificationQueue",
      Effect: "Allow",
      Action: [
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueAttributes",
      ],
      Resource: input.queueArn,
    },
    putMetrics,
    {
      Sid: "UseBucketKey",
      Effect: "Allow",
      Action: ["kms:Decrypt", "kms:GenerateDataKey"],
      Resource: input.keyArn,
      Condition: viaS3(input.region),
    },
  );
}

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
