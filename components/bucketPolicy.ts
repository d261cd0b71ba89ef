import { normalizePrefix, VERDICT_OBJECTS } from "../contracts";
import { RETENTION_CLASSES, RETENTION_TAG } from "../contracts/objectTags";
import {
  backupObjectsArn,
  denyPutUnless,
  document,
  SSE_HEADER,
  SSE_KEY_HEADER,
  verdictObjectArns,
  type PolicyDocument,
  type PolicyStatement,
} from "./iam";

/** Inputs of the backup bucket's policy. */
export interface BucketPolicyInput {
  bucketArn: string;
  keyArn: string;
  /** Key prefix above `<cluster>/`: below it, objects are write-once and verdicts the verifier's alone. */
  prefix: string;
  /** The only principal that may write verdicts (the verifier's role). Absent: nobody may. */
  verdictWriterArn?: string;
  /** The verdict object names. Defaults to `VERDICT_OBJECTS` of contracts/keys. */
  verdictObjects?: readonly string[];
}

/**
 * The bucket policy. For everyone, whatever their IAM policies say (an administrator included):
 * - TLS only, at least 1.2; no upload that asks for other encryption or another key;
 * - below `<prefix>/`, objects are created once and never overwritten: a PutObject or
 *   CompleteMultipartUpload without `If-None-Match: *` is refused, so no new version can ever replace what
 *   a verdict proved (the parts of a multipart upload, which create nothing, are exempt);
 * - only the verifier's role writes verdicts: a replica cannot forge its own `verification.json`;
 * - the retention tag, once set, can be neither changed nor removed (it decides how long the lifecycle
 *   keeps a backup).
 */
export function backupBucketPolicy(input: BucketPolicyInput): PolicyDocument {
  const { bucketArn, keyArn } = input;
  const everything = [bucketArn, `${bucketArn}/*`];
  const backups = backupObjectsArn(bucketArn, normalizePrefix(input.prefix));
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
    {
      Sid: "DenyOverwritingBackups",
      Effect: "Deny",
      Principal: "*",
      Action: "s3:PutObject",
      Resource: backups,
      // IfExists: a request S3 did not classify is treated as one that creates an object (fail closed).
      Condition: {
        Null: { "s3:if-none-match": "true" },
        BoolIfExists: { "s3:ObjectCreationOperation": "true" },
      },
    },
    denyVerdictsToOthers(input),
    ...RETENTION_CLASSES.map((c) => denyRetentionTagChange(backups, c)),
    {
      Sid: "DenyRemovingRetentionTags",
      Effect: "Deny",
      Principal: "*",
      Action: ["s3:DeleteObjectTagging", "s3:DeleteObjectVersionTagging"],
      Resource: backups,
      Condition: { Null: { [`s3:ExistingObjectTag/${RETENTION_TAG}`]: "false" } },
    },
  );
}

/** Verdicts from anyone but the verifier's role; from anyone at all when there is no verifier. */
function denyVerdictsToOthers(input: BucketPolicyInput): PolicyStatement {
  return {
    Sid: "DenyVerdictsFromAnyoneButTheVerifier",
    Effect: "Deny",
    Principal: "*",
    Action: "s3:PutObject",
    Resource: verdictObjectArns(input.bucketArn, input.prefix, input.verdictObjects ?? VERDICT_OBJECTS),
    ...(input.verdictWriterArn
      ? { Condition: { ArnNotEquals: { "aws:PrincipalArn": input.verdictWriterArn } } }
      : {}),
  };
}

/** A tagging request on an object of class `c` must restate `retention=c`. */
function denyRetentionTagChange(backups: string, c: string): PolicyStatement {
  const key = `s3:ExistingObjectTag/${RETENTION_TAG}`;
  return {
    Sid: `DenyChangingRetention${c[0].toUpperCase()}${c.slice(1)}`,
    Effect: "Deny",
    Principal: "*",
    Action: ["s3:PutObjectTagging", "s3:PutObjectVersionTagging"],
    Resource: backups,
    Condition: {
      StringEquals: { [key]: c },
      StringNotEquals: { [`s3:RequestObjectTag/${RETENTION_TAG}`]: c },
    },
  };
}
