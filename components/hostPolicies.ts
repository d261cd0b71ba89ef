import { binlogPrefix, hostPrefix, normalizePrefix, VERDICT_OBJECTS } from "../contracts";
import { RETENTION_CLASSES, RETENTION_TAG, VERDICT_TAG } from "../contracts/objectTags";
import {
  ARTIFACTS_PREFIX,
  backupObjectsArn,
  CREATE_ONLY,
  denyPutUnless,
  document,
  putMetrics,
  SSE_HEADER,
  SSE_KEY_HEADER,
  UPLOAD_PARTS,
  verdictObjectArns,
  viaS3,
  type PolicyDocument,
} from "./iam";

/** Inputs of a replica's role policy. */
export interface ReplicaPolicyInput {
  bucketArn: string;
  keyArn: string;
  queueArn: string;
  region: string;
  prefix: string;
  cluster: string;
  /** The replica's own name: it writes below `<prefix>/<cluster>/<host>/` only. */
  host: string;
  /** The verdict object names. Defaults to `VERDICT_OBJECTS` of contracts/keys. */
  verdictObjects?: readonly string[];
}

/**
 * A replica creates its own backups and its cluster's binary log segments, and announces them; it can
 * neither read, overwrite nor delete anything, nor write into a sibling host's prefix, nor write a verdict.
 * Every complete object is created with `If-None-Match: *` (PutObject, CompleteMultipartUpload); the parts
 * of a multipart upload need the same PutObject permission without it. Multipart uploads also need
 * AbortMultipartUpload and ListMultipartUploadParts on the same keys, and SSE-KMS multipart uploads
 * kms:Decrypt (S3 decrypts the data key to assemble the parts). It may tag what it creates with its
 * retention class, once (the bucket policy keeps the tag from changing afterwards).
 */
export function replicaRolePolicy(input: ReplicaPolicyInput): PolicyDocument {
  const own = `${input.bucketArn}/${hostPrefix(input.prefix, input.cluster, input.host)}*`;
  const binlogs = `${input.bucketArn}/${binlogPrefix(input.prefix, input.cluster)}*`;
  return document(
    {
      Sid: "CreateOwnBackupsAndBinlogs",
      Effect: "Allow",
      Action: "s3:PutObject",
      Resource: [own, binlogs],
      Condition: CREATE_ONLY,
    },
    {
      Sid: "UploadParts",
      Effect: "Allow",
      Action: "s3:PutObject",
      Resource: [own, binlogs],
      Condition: UPLOAD_PARTS,
    },
    {
      Sid: "ManageOwnMultipartUploads",
      Effect: "Allow",
      Action: ["s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
      Resource: [own, binlogs],
    },
    {
      Sid: "TagOwnBackupsWithTheirRetention",
      Effect: "Allow",
      Action: "s3:PutObjectTagging",
      Resource: own,
      Condition: {
        "ForAllValues:StringEquals": { "s3:RequestObjectTagKeys": [RETENTION_TAG] },
        StringEquals: { [`s3:RequestObjectTag/${RETENTION_TAG}`]: [...RETENTION_CLASSES] },
        Null: { [`s3:ExistingObjectTag/${RETENTION_TAG}`]: "true" },
      },
    },
    {
      Sid: "DenyWritingVerdicts",
      Effect: "Deny",
      Action: "s3:PutObject",
      Resource: verdictObjectArns(input.bucketArn, input.prefix, input.verdictObjects ?? VERDICT_OBJECTS),
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
  /** ARN of the log group the instances ship their logs to. */
  logGroupArn: string;
  /** The verdict object names. Defaults to `VERDICT_OBJECTS` of contracts/keys. */
  verdictObjects?: readonly string[];
}

/**
 * The verifier reads backups (any version: a verdict names the exact versions it proved) and the stack's
 * artifacts, creates verdicts (never overwrites one), tags backups with their verdict (keeping their
 * retention tag, which the bucket policy makes immutable), consumes the queue and ships its logs.
 */
export function verifierRolePolicy(input: VerifierPolicyInput): PolicyDocument {
  const backups = backupObjectsArn(input.bucketArn, input.prefix);
  const prefix = normalizePrefix(input.prefix);
  return document(
    {
      Sid: "ReadBackupsAndArtifacts",
      Effect: "Allow",
      Action: ["s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectTagging", "s3:GetObjectVersionTagging"],
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
      Sid: "CreateVerdicts",
      Effect: "Allow",
      Action: "s3:PutObject",
      Resource: verdictObjectArns(input.bucketArn, input.prefix, input.verdictObjects ?? VERDICT_OBJECTS),
      Condition: CREATE_ONLY,
    },
    {
      Sid: "TagVerdicts",
      Effect: "Allow",
      Action: ["s3:PutObjectTagging", "s3:PutObjectVersionTagging"],
      Resource: backups,
      Condition: { "ForAllValues:StringEquals": { "s3:RequestObjectTagKeys": [VERDICT_TAG, RETENTION_TAG] } },
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
      Sid: "ShipLogs",
      Effect: "Allow",
      Action: ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
      Resource: [input.logGroupArn, `${input.logGroupArn}:log-stream:*`],
    },
    {
      Sid: "UseBucketKey",
      Effect: "Allow",
      Action: ["kms:Decrypt", "kms:GenerateDataKey"],
      Resource: input.keyArn,
      Condition: viaS3(input.region),
    },
  );
}
