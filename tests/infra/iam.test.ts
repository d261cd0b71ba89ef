/**
 * IAM evaluated, not just read: the role policies, bucket policy and key policy the real prod stack
 * registers go through @cloud-copilot/iam-simulate in a matrix of allowed and denied requests
 * (tests/support/iam.ts sets the context AWS attaches: the principal's ARN, S3's creation flag).
 */
import { VERDICT_OBJECTS } from "../../contracts";
import { ACCOUNT_ID, DEFAULT_REGION } from "../../policies/stackSimulator";
import { decide, prodPolicies, type Context, type Decision, type Policies, type Who } from "../support/iam";

let p: Policies;

beforeAll(async () => {
  p = await prodPolicies();
}, 120_000);

const object = (key: string): string => `${p.bucketArn}/${key}`;
const ID = "20261124T020000Z-3fa9c1";
const ordersBackup = (name: string): string => `backups/orders/orders-db3/${ID}/${name}`;
const siblingBackup = (name: string): string => `backups/orders/orders-db9/${ID}/${name}`;
const billingBackup = (name: string): string => `backups/billing/billing-db2/${ID}/${name}`;
const ordersBinlog = (name: string): string => `backups/orders/binlogs/5f1e-server-uuid/${name}`;
const sseKms = (): Context => ({
  "s3:x-amz-server-side-encryption": "aws:kms",
  "s3:x-amz-server-side-encryption-aws-kms-key-id": p.keyArn,
});
/** A write that only creates: `If-None-Match: *` (PutObject, CompleteMultipartUpload). */
const created = (): Context => ({ ...sseKms(), "s3:if-none-match": "*" });
const viaS3 = { "kms:ViaService": `s3.${DEFAULT_REGION}.amazonaws.com` };
const tagging = (tags: Record<string, string>, existing: Record<string, string> = {}): Context => ({
  "s3:RequestObjectTagKeys": Object.keys(tags),
  ...Object.fromEntries(Object.entries(tags).map(([k, v]) => [`s3:RequestObjectTag/${k}`, v])),
  ...Object.fromEntries(Object.entries(existing).map(([k, v]) => [`s3:ExistingObjectTag/${k}`, v])),
});

interface Case {
  who: Who;
  /** An IAM action, or an S3 write operation (PutObject, CompleteMultipartUpload, UploadPart…). */
  action: string;
  resource: () => string;
  context?: () => Context;
  expect: Decision;
}

const cases: Record<string, Case> = {
  // The replica: creates its own host's backups with SSE-KMS of the bucket key, nothing else.
  "replica PutObject (If-None-Match) own host with SSE-KMS": {
    who: "orders",
    action: "PutObject",
    resource: () => object(ordersBackup("manifest.json")),
    context: created,
    expect: "Allowed",
  },
  "replica CreateMultipartUpload own host": {
    who: "orders",
    action: "CreateMultipartUpload",
    resource: () => object(ordersBackup("archive.tar.zst")),
    context: sseKms,
    expect: "Allowed",
  },
  "replica UploadPart own host (no SSE or conditional header)": {
    who: "orders",
    action: "UploadPart",
    resource: () => object(ordersBackup("archive.tar.zst")),
    expect: "Allowed",
  },
  "replica CompleteMultipartUpload (If-None-Match) own host": {
    who: "orders",
    action: "CompleteMultipartUpload",
    resource: () => object(ordersBackup("archive.tar.zst")),
    context: () => ({ "s3:if-none-match": "*" }),
    expect: "Allowed",
  },
  "overwrite: replica PutObject without If-None-Match": {
    who: "orders",
    action: "PutObject",
    resource: () => object(ordersBackup("manifest.json")),
    context: sseKms,
    expect: "Denied",
  },
  "overwrite: replica CompleteMultipartUpload without If-None-Match": {
    who: "orders",
    action: "CompleteMultipartUpload",
    resource: () => object(ordersBackup("archive.tar.zst")),
    expect: "Denied",
  },
  "overwrite: replica PutObject with If-Match (replace a known version)": {
    who: "orders",
    action: "PutObject",
    resource: () => object(ordersBackup("manifest.json")),
    context: () => ({ ...sseKms(), "s3:if-match": '"0123456789abcdef0123456789abcdef"' }),
    expect: "Denied",
  },
  "forged verdict: replica PutObject verification.json (If-None-Match)": {
    who: "orders",
    action: "PutObject",
    resource: () => object(ordersBackup("verification.json")),
    context: created,
    expect: "Denied",
  },
  "forged verdict: replica CompleteMultipartUpload verification.json": {
    who: "orders",
    action: "CompleteMultipartUpload",
    resource: () => object(ordersBackup("verification.json")),
    context: () => ({ "s3:if-none-match": "*" }),
    expect: "Denied",
  },
  "sibling host: replica PutObject into another host's prefix of its cluster": {
    who: "orders",
    action: "PutObject",
    resource: () => object(siblingBackup("archive.tar.zst")),
    context: created,
    expect: "Denied",
  },
  "sibling host: replica UploadPart into another host's prefix of its cluster": {
    who: "orders",
    action: "UploadPart",
    resource: () => object(siblingBackup("archive.tar.zst")),
    expect: "Denied",
  },
  "replica PutObject with SSE-S3 (AES256)": {
    who: "orders",
    action: "PutObject",
    resource: () => object(ordersBackup("archive.tar.zst")),
    context: () => ({ "s3:x-amz-server-side-encryption": "AES256", "s3:if-none-match": "*" }),
    expect: "Denied",
  },
  "replica PutObject with another KMS key": {
    who: "orders",
    action: "PutObject",
    resource: () => object(ordersBackup("archive.tar.zst")),
    context: () => ({
      "s3:if-none-match": "*",
      "s3:x-amz-server-side-encryption": "aws:kms",
      "s3:x-amz-server-side-encryption-aws-kms-key-id": `arn:aws:kms:${DEFAULT_REGION}:${ACCOUNT_ID}:key/someone-elses`,
    }),
    expect: "Denied",
  },
  "replica PutObject into another cluster's prefix": {
    who: "orders",
    action: "PutObject",
    resource: () => object(billingBackup("archive.tar.zst")),
    context: created,
    expect: "Denied",
  },
  "other replica PutObject into orders' prefix": {
    who: "billing",
    action: "PutObject",
    resource: () => object(ordersBackup("manifest.json")),
    context: created,
    expect: "Denied",
  },
  "replica PutObject outside the backup prefix": {
    who: "orders",
    action: "PutObject",
    resource: () => object("artifacts/mysql-backup/mysql-backup.cjs"),
    context: created,
    expect: "Denied",
  },
  "replica GetObject own backup": {
    who: "orders",
    action: "s3:GetObject",
    resource: () => object(ordersBackup("archive.tar.zst")),
    expect: "Denied",
  },
  "replica DeleteObject own backup": {
    who: "orders",
    action: "s3:DeleteObject",
    resource: () => object(ordersBackup("archive.tar.zst")),
    expect: "Denied",
  },
  "replica AbortMultipartUpload own host": {
    who: "orders",
    action: "s3:AbortMultipartUpload",
    resource: () => object(ordersBackup("archive.tar.zst")),
    expect: "Allowed",
  },
  "replica ListMultipartUploadParts own host": {
    who: "orders",
    action: "s3:ListMultipartUploadParts",
    resource: () => object(ordersBackup("archive.tar.zst")),
    expect: "Allowed",
  },
  "replica AbortMultipartUpload in a sibling host's prefix": {
    who: "orders",
    action: "s3:AbortMultipartUpload",
    resource: () => object(siblingBackup("archive.tar.zst")),
    expect: "Denied",
  },
  "replica ListBucket": {
    who: "orders",
    action: "s3:ListBucket",
    resource: () => p.bucketArn,
    expect: "Denied",
  },
  // The binlog archive of the replica's cluster: create only.
  "binlogs: replica PutObject (If-None-Match) a segment of its cluster": {
    who: "orders",
    action: "PutObject",
    resource: () => object(ordersBinlog("mariadb-bin.000042.0-1048576.zst")),
    context: created,
    expect: "Allowed",
  },
  "binlogs: replica UploadPart of a segment of its cluster": {
    who: "orders",
    action: "UploadPart",
    resource: () => object(ordersBinlog("mariadb-bin.000042.0-1048576.zst")),
    expect: "Allowed",
  },
  "binlogs: replica overwrites a segment (no If-None-Match)": {
    who: "orders",
    action: "PutObject",
    resource: () => object(ordersBinlog("mariadb-bin.000042.0-1048576.zst")),
    context: sseKms,
    expect: "Denied",
  },
  "binlogs: replica GetObject a segment": {
    who: "orders",
    action: "s3:GetObject",
    resource: () => object(ordersBinlog("mariadb-bin.000042.0-1048576.zst")),
    expect: "Denied",
  },
  "binlogs: replica DeleteObject a segment": {
    who: "orders",
    action: "s3:DeleteObject",
    resource: () => object(ordersBinlog("mariadb-bin.000042.0-1048576.zst")),
    expect: "Denied",
  },
  "binlogs: replica PutObject into another cluster's binlogs": {
    who: "billing",
    action: "PutObject",
    resource: () => object(ordersBinlog("mariadb-bin.000042.0-1048576.zst")),
    context: created,
    expect: "Denied",
  },
  "binlogs: replica writes a verdict in the binlog archive": {
    who: "orders",
    action: "PutObject",
    resource: () => object(ordersBinlog("verification.json")),
    context: created,
    expect: "Denied",
  },
  // A segment's verdict lies beside it, under the prefix where the replica may create objects.
  "binlogs: replica forges a segment's verdict beside its segment": {
    who: "orders",
    action: "PutObject",
    resource: () =>
      object(ordersBinlog("20261130T162631Z-3fa9c1/0000000042-20261130T163053Z.segment-verification.json")),
    context: created,
    expect: "Denied",
  },
  "binlogs: verifier writes a segment's verdict beside the segment": {
    who: "verifier",
    action: "PutObject",
    resource: () =>
      object(ordersBinlog("20261130T162631Z-3fa9c1/0000000042-20261130T163053Z.segment-verification.json")),
    context: created,
    expect: "Allowed",
  },
  "binlogs: verifier writes a segment (not a verdict)": {
    who: "verifier",
    action: "PutObject",
    resource: () => object(ordersBinlog("20261130T162631Z-3fa9c1/0000000042-20261130T163053Z.binlog")),
    context: created,
    expect: "Denied",
  },
  // Retention tags: set once by the replica when it creates the object, never changed afterwards.
  "replica tags what it creates retention=monthly": {
    who: "orders",
    action: "s3:PutObjectTagging",
    resource: () => object(ordersBackup("archive.tar.zst")),
    context: () => tagging({ retention: "monthly" }),
    expect: "Allowed",
  },
  "replica re-tags a daily backup as monthly": {
    who: "orders",
    action: "s3:PutObjectTagging",
    resource: () => object(ordersBackup("archive.tar.zst")),
    context: () => tagging({ retention: "monthly" }, { retention: "daily" }),
    expect: "Denied",
  },
  "replica tags its backup with another tag key": {
    who: "orders",
    action: "s3:PutObjectTagging",
    resource: () => object(ordersBackup("archive.tar.zst")),
    context: () => tagging({ verified: "true" }),
    expect: "Denied",
  },
  "replica sends SQS SendMessage to the verification queue": {
    who: "orders",
    action: "sqs:SendMessage",
    resource: () => p.queueArn,
    expect: "Allowed",
  },
  "replica ReceiveMessage": {
    who: "orders",
    action: "sqs:ReceiveMessage",
    resource: () => p.queueArn,
    expect: "Denied",
  },
  "replica PutMetricData in the pipeline namespace": {
    who: "orders",
    action: "cloudwatch:PutMetricData",
    resource: () => "*",
    context: () => ({ "cloudwatch:namespace": "MysqlBackupPipeline" }),
    expect: "Allowed",
  },
  "replica PutMetricData in another namespace": {
    who: "orders",
    action: "cloudwatch:PutMetricData",
    resource: () => "*",
    context: () => ({ "cloudwatch:namespace": "Other" }),
    expect: "Denied",
  },
  "replica kms:GenerateDataKey through S3": {
    who: "orders",
    action: "kms:GenerateDataKey",
    resource: () => p.keyArn,
    context: () => viaS3,
    expect: "Allowed",
  },
  "replica kms:Decrypt through S3 (multipart SSE-KMS)": {
    who: "orders",
    action: "kms:Decrypt",
    resource: () => p.keyArn,
    context: () => viaS3,
    expect: "Allowed",
  },
  "replica kms:Decrypt directly (not through S3)": {
    who: "orders",
    action: "kms:Decrypt",
    resource: () => p.keyArn,
    expect: "Denied",
  },
  // The verifier: reads backups (any version) and artifacts, creates verdicts, tags verdicts, consumes.
  "verifier GetObject archive": {
    who: "verifier",
    action: "s3:GetObject",
    resource: () => object(ordersBackup("archive.tar.zst")),
    expect: "Allowed",
  },
  "verifier GetObjectVersion archive (the version a verdict proved)": {
    who: "verifier",
    action: "s3:GetObjectVersion",
    resource: () => object(ordersBackup("archive.tar.zst")),
    context: () => ({ "s3:versionid": "3HL4kqtJlcpXroDTDmJ-rmSpXd3dIbrHY" }),
    expect: "Allowed",
  },
  "verifier GetObject manifest of another cluster": {
    who: "verifier",
    action: "s3:GetObject",
    resource: () => object(billingBackup("manifest.json")),
    expect: "Allowed",
  },
  "verifier GetObjectVersion the bundle artifact": {
    who: "verifier",
    action: "s3:GetObjectVersion",
    resource: () => object("artifacts/mysql-backup/mysql-backup.cjs"),
    expect: "Allowed",
  },
  "verifier ListBucket under the prefix": {
    who: "verifier",
    action: "s3:ListBucket",
    resource: () => p.bucketArn,
    context: () => ({ "s3:prefix": "backups/orders/" }),
    expect: "Allowed",
  },
  "verifier PutObject (If-None-Match) verification.json": {
    who: "verifier",
    action: "PutObject",
    resource: () => object(ordersBackup("verification.json")),
    context: created,
    expect: "Allowed",
  },
  "verifier overwrites a verdict (no If-None-Match)": {
    who: "verifier",
    action: "PutObject",
    resource: () => object(ordersBackup("verification.json")),
    context: sseKms,
    expect: "Denied",
  },
  "verifier PutObject manifest.json": {
    who: "verifier",
    action: "PutObject",
    resource: () => object(ordersBackup("manifest.json")),
    context: created,
    expect: "Denied",
  },
  "verifier PutObject archive": {
    who: "verifier",
    action: "PutObject",
    resource: () => object(ordersBackup("archive.tar.zst")),
    context: created,
    expect: "Denied",
  },
  "verifier tags a verdict, restating the retention tag": {
    who: "verifier",
    action: "s3:PutObjectTagging",
    resource: () => object(ordersBackup("archive.tar.zst")),
    context: () => tagging({ verified: "true", retention: "monthly" }, { retention: "monthly" }),
    expect: "Allowed",
  },
  "verifier tags a verdict on an object without retention tag": {
    who: "verifier",
    action: "s3:PutObjectTagging",
    resource: () => object(ordersBackup("archive.tar.zst")),
    context: () => tagging({ verified: "true" }),
    expect: "Allowed",
  },
  "verifier tagging drops the retention tag": {
    who: "verifier",
    action: "s3:PutObjectTagging",
    resource: () => object(ordersBackup("archive.tar.zst")),
    context: () => tagging({ verified: "true" }, { retention: "monthly" }),
    expect: "Denied",
  },
  "verifier PutObjectTagging with another tag key": {
    who: "verifier",
    action: "s3:PutObjectTagging",
    resource: () => object(ordersBackup("archive.tar.zst")),
    context: () => tagging({ verified: "true", "retain-forever": "yes" }),
    expect: "Denied",
  },
  "verifier DeleteObject": {
    who: "verifier",
    action: "s3:DeleteObject",
    resource: () => object(ordersBackup("archive.tar.zst")),
    expect: "Denied",
  },
  "verifier ReceiveMessage": {
    who: "verifier",
    action: "sqs:ReceiveMessage",
    resource: () => p.queueArn,
    expect: "Allowed",
  },
  "verifier DeleteMessage": {
    who: "verifier",
    action: "sqs:DeleteMessage",
    resource: () => p.queueArn,
    expect: "Allowed",
  },
  "verifier ChangeMessageVisibility": {
    who: "verifier",
    action: "sqs:ChangeMessageVisibility",
    resource: () => p.queueArn,
    expect: "Allowed",
  },
  "verifier GetQueueAttributes": {
    who: "verifier",
    action: "sqs:GetQueueAttributes",
    resource: () => p.queueArn,
    expect: "Allowed",
  },
  "verifier SendMessage": {
    who: "verifier",
    action: "sqs:SendMessage",
    resource: () => p.queueArn,
    expect: "Denied",
  },
  "verifier PutMetricData in the pipeline namespace": {
    who: "verifier",
    action: "cloudwatch:PutMetricData",
    resource: () => "*",
    context: () => ({ "cloudwatch:namespace": "MysqlBackupPipeline" }),
    expect: "Allowed",
  },
  "verifier PutLogEvents to its log group": {
    who: "verifier",
    action: "logs:PutLogEvents",
    resource: () => `${p.logGroupArn}:log-stream:i-0123456789abcdef0/verifier`,
    expect: "Allowed",
  },
  "verifier PutLogEvents to another log group": {
    who: "verifier",
    action: "logs:PutLogEvents",
    resource: () => `arn:aws:logs:${DEFAULT_REGION}:${ACCOUNT_ID}:log-group:/other:log-stream:x`,
    expect: "Denied",
  },
  "verifier kms:Decrypt through S3": {
    who: "verifier",
    action: "kms:Decrypt",
    resource: () => p.keyArn,
    context: () => viaS3,
    expect: "Allowed",
  },
  "verifier kms:GenerateDataKey through S3 (writes reports)": {
    who: "verifier",
    action: "kms:GenerateDataKey",
    resource: () => p.keyArn,
    context: () => viaS3,
    expect: "Allowed",
  },
  // An administrator allowed everything by IAM: the bucket policy alone keeps backups write-once, verdicts
  // the verifier's and retention tags fixed.
  "admin reads a backup (IAM decides)": {
    who: "admin",
    action: "s3:GetObject",
    resource: () => object(ordersBackup("archive.tar.zst")),
    expect: "Allowed",
  },
  "admin creates an object below the prefix (If-None-Match)": {
    who: "admin",
    action: "PutObject",
    resource: () => object(ordersBackup("notes.txt")),
    context: created,
    expect: "Allowed",
  },
  "forged verdict: admin PutObject verification.json": {
    who: "admin",
    action: "PutObject",
    resource: () => object(ordersBackup("verification.json")),
    context: created,
    expect: "Denied",
  },
  "overwrite: admin PutObject over an archive": {
    who: "admin",
    action: "PutObject",
    resource: () => object(ordersBackup("archive.tar.zst")),
    context: sseKms,
    expect: "Denied",
  },
  "admin re-tags a monthly backup as daily": {
    who: "admin",
    action: "s3:PutObjectTagging",
    resource: () => object(ordersBackup("archive.tar.zst")),
    context: () => tagging({ retention: "daily" }, { retention: "monthly" }),
    expect: "Denied",
  },
  "admin removes a retention tag": {
    who: "admin",
    action: "s3:DeleteObjectTagging",
    resource: () => object(ordersBackup("archive.tar.zst")),
    context: () => ({ "s3:ExistingObjectTag/retention": "monthly" }),
    expect: "Denied",
  },
  "admin overwrites the bundle artifact (outside the write-once prefix)": {
    who: "admin",
    action: "PutObject",
    resource: () => object("artifacts/mysql-backup/mysql-backup.cjs"),
    context: sseKms,
    expect: "Allowed",
  },
  // Nobody anonymous, nothing over plain HTTP or old TLS, even for an allowed action.
  "anonymous GetObject": {
    who: "anonymous",
    action: "s3:GetObject",
    resource: () => object(ordersBackup("archive.tar.zst")),
    expect: "Denied",
  },
  "anonymous PutObject": {
    who: "anonymous",
    action: "PutObject",
    resource: () => object(ordersBackup("archive.tar.zst")),
    context: created,
    expect: "Denied",
  },
  "anonymous ListBucket": {
    who: "anonymous",
    action: "s3:ListBucket",
    resource: () => p.bucketArn,
    expect: "Denied",
  },
  "replica PutObject over plain HTTP": {
    who: "orders",
    action: "PutObject",
    resource: () => object(ordersBackup("archive.tar.zst")),
    context: () => ({ ...created(), "aws:SecureTransport": "false" }),
    expect: "Denied",
  },
  "replica PutObject over TLS 1.1": {
    who: "orders",
    action: "PutObject",
    resource: () => object(ordersBackup("archive.tar.zst")),
    context: () => ({ ...created(), "s3:TlsVersion": "1.1" }),
    expect: "Denied",
  },
  "verifier GetObject over plain HTTP": {
    who: "verifier",
    action: "s3:GetObject",
    resource: () => object(ordersBackup("archive.tar.zst")),
    context: () => ({ "aws:SecureTransport": "false" }),
    expect: "Denied",
  },
};

/** What no host role may ever do, on the objects and the bucket. */
const forbiddenToHosts: Array<[string, () => string]> = [
  ["s3:DeleteObjectVersion", () => object(ordersBackup("archive.tar.zst"))],
  ["s3:BypassGovernanceRetention", () => object(ordersBackup("archive.tar.zst"))],
  ["s3:PutObjectRetention", () => object(ordersBackup("archive.tar.zst"))],
  ["s3:PutObjectLegalHold", () => object(ordersBackup("archive.tar.zst"))],
  ["s3:DeleteObjectTagging", () => object(ordersBackup("archive.tar.zst"))],
  ["s3:PutBucketObjectLockConfiguration", () => p.bucketArn],
  ["s3:PutBucketPolicy", () => p.bucketArn],
  ["s3:DeleteBucketPolicy", () => p.bucketArn],
  ["s3:PutLifecycleConfiguration", () => p.bucketArn],
  ["s3:PutBucketVersioning", () => p.bucketArn],
  ["s3:DeleteBucket", () => p.bucketArn],
];
for (const who of ["orders", "billing", "verifier"] as const) {
  for (const [action, resource] of forbiddenToHosts) {
    cases[`${who} ${action}`] = { who, action, resource, expect: "Denied" };
  }
}

/** Every verdict kind of contracts/keys: only the verifier writes one, anywhere below the prefix. */
for (const name of VERDICT_OBJECTS.map((n) => n.replace(/\*/g, "x"))) {
  const key = (): string => object(ordersBackup(name));
  cases[`verdict ${name}: replica denied`] = {
    who: "orders",
    action: "PutObject",
    resource: key,
    context: created,
    expect: "Denied",
  };
  cases[`verdict ${name}: admin denied`] = {
    who: "admin",
    action: "PutObject",
    resource: key,
    context: created,
    expect: "Denied",
  };
  cases[`verdict ${name}: verifier allowed`] = {
    who: "verifier",
    action: "PutObject",
    resource: key,
    context: created,
    expect: "Allowed",
  };
}

describe("IAM matrix (policies as the prod stack registers them)", () => {
  test("the matrix covers every principal, allowed and denied", () => {
    const entries = Object.values(cases);
    for (const who of ["orders", "billing", "verifier", "admin", "anonymous"]) {
      expect(entries.some((c) => c.who === who)).toBe(true);
    }
    expect(entries.filter((c) => c.expect === "Allowed").length).toBeGreaterThan(20);
    expect(entries.filter((c) => c.expect === "Denied").length).toBeGreaterThan(50);
  });

  test.each(Object.entries(cases))("%s", async (_name, c) => {
    expect(
      await decide(p, { who: c.who, action: c.action, resource: c.resource(), context: c.context?.() }),
    ).toBe(c.expect);
  });
});
