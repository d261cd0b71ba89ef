/**
 * IAM evaluated, not just read: the role policies, bucket policy and key policy the real prod stack
 * registers go through @cloud-copilot/iam-simulate in a matrix of allowed and denied requests.
 */
import { anonymousPrincipal, runSimulation, type Simulation } from "@cloud-copilot/iam-simulate";
import {
  ACCOUNT_ID,
  DEFAULT_REGION,
  simulateStack,
  type RegisteredResource,
} from "../../policies/stackSimulator";

type Decision = "Allowed" | "Denied";
type Context = Record<string, string | string[]>;

interface Policies {
  bucketArn: string;
  keyArn: string;
  queueArn: string;
  bucketPolicy: object;
  keyPolicy: object;
  roles: Record<"orders" | "billing" | "verifier", { arn: string; policy: object }>;
}

let p: Policies;

function findOne(resources: RegisteredResource[], type: string, nameSuffix: string): RegisteredResource {
  const found = resources.filter((r) => r.type === type && r.name.endsWith(nameSuffix));
  if (found.length !== 1) throw new Error(`expected one ${type} named *${nameSuffix}, found ${found.length}`);
  return found[0];
}

beforeAll(async () => {
  const { resources, outputs } = await simulateStack("Pulumi.prod.yaml");
  const json = (r: RegisteredResource, field: string): object =>
    JSON.parse(r.inputs[field] as string) as object;
  const roles = outputs.replicaRoleArns as Record<string, string>;
  p = {
    bucketArn: `arn:aws:s3:::${outputs.bucketName as string}`,
    keyArn: outputs.kmsKeyArn as string,
    queueArn: (outputs.queueUrl as string).replace(
      /^https:\/\/sqs\.([^.]+)\.amazonaws\.com\/(\d+)\/(.+)$/,
      "arn:aws:sqs:$1:$2:$3",
    ),
    bucketPolicy: json(findOne(resources, "aws:s3/bucketPolicy:BucketPolicy", "-backups-policy"), "policy"),
    keyPolicy: json(findOne(resources, "aws:kms/key:Key", "-backups-key"), "policy"),
    roles: {
      orders: {
        arn: roles["orders/orders-db3"],
        policy: json(
          findOne(resources, "aws:iam/rolePolicy:RolePolicy", "-orders-orders-db3-policy"),
          "policy",
        ),
      },
      billing: {
        arn: roles["billing/billing-db2"],
        policy: json(
          findOne(resources, "aws:iam/rolePolicy:RolePolicy", "-billing-billing-db2-policy"),
          "policy",
        ),
      },
      verifier: {
        arn: outputs.verifierRoleArn as string,
        policy: json(findOne(resources, "aws:iam/rolePolicy:RolePolicy", "-verifier-policy"), "policy"),
      },
    },
  };
}, 120_000);

/** Runs one request through the simulator; a simulator validation error fails the test, never "denies". */
async function decide(
  who: keyof Policies["roles"] | "anonymous",
  action: string,
  resource: string,
  context: Context = {},
): Promise<Decision> {
  const service = action.split(":")[0];
  const resourcePolicy = service === "s3" ? p.bucketPolicy : service === "kms" ? p.keyPolicy : undefined;
  const secure: Context = {
    "aws:SecureTransport": "true",
    ...(service === "s3" ? { "s3:TlsVersion": "1.3" } : {}),
  };
  const simulation: Simulation = {
    request: {
      principal: who === "anonymous" ? anonymousPrincipal : p.roles[who].arn,
      action,
      resource: { resource, accountId: ACCOUNT_ID },
      contextVariables: { ...secure, ...context },
    },
    identityPolicies: who === "anonymous" ? [] : [{ name: `${who}-policy`, policy: p.roles[who].policy }],
    serviceControlPolicies: [],
    resourceControlPolicies: [],
    resourcePolicy,
    additionalSettings: { s3: { blockPublicAccess: true } },
  };
  const result = await runSimulation(simulation, {});
  if (result.resultType === "error")
    throw new Error(`simulator rejected the request: ${JSON.stringify(result.errors)}`);
  const ignored = result.resultType === "single" ? (result.result.ignoredContextKeys ?? []) : [];
  // A context key the simulator ignores would make a case pass for the wrong reason.
  const meaningful = ignored.filter((k) => k in context);
  if (meaningful.length)
    throw new Error(`simulator ignored context keys ${meaningful.join(", ")} for ${action}`);
  return result.overallResult === "Allowed" ? "Allowed" : "Denied";
}

const object = (key: string): string => `${p.bucketArn}/${key}`;
const ordersBackup = (name: string): string => `backups/orders/orders-db3/20261124T020000Z-3fa9c1/${name}`;
const billingBackup = (name: string): string => `backups/billing/billing-db2/20261124T020000Z-3fa9c1/${name}`;
const sseKms = (): Context => ({
  "s3:x-amz-server-side-encryption": "aws:kms",
  "s3:x-amz-server-side-encryption-aws-kms-key-id": p.keyArn,
});
const viaS3 = { "kms:ViaService": `s3.${DEFAULT_REGION}.amazonaws.com` };

interface Case {
  who: keyof Policies["roles"] | "anonymous";
  action: string;
  resource: () => string;
  context?: () => Context;
  expect: Decision;
}

const cases: Record<string, Case> = {
  // The replica: uploads its own cluster's backups with SSE-KMS of the bucket key, nothing else.
  "replica PutObject own cluster with SSE-KMS": {
    who: "orders",
    action: "s3:PutObject",
    resource: () => object(ordersBackup("archive.tar.zst")),
    context: sseKms,
    expect: "Allowed",
  },
  "replica UploadPart (PutObject without SSE headers) own cluster": {
    who: "orders",
    action: "s3:PutObject",
    resource: () => object(ordersBackup("archive.tar.zst")),
    expect: "Allowed",
  },
  "replica PutObject manifest own cluster": {
    who: "orders",
    action: "s3:PutObject",
    resource: () => object(ordersBackup("manifest.json")),
    context: sseKms,
    expect: "Allowed",
  },
  "replica AbortMultipartUpload own cluster": {
    who: "orders",
    action: "s3:AbortMultipartUpload",
    resource: () => object(ordersBackup("archive.tar.zst")),
    expect: "Allowed",
  },
  "replica ListMultipartUploadParts own cluster": {
    who: "orders",
    action: "s3:ListMultipartUploadParts",
    resource: () => object(ordersBackup("archive.tar.zst")),
    expect: "Allowed",
  },
  "replica PutObject with SSE-S3 (AES256)": {
    who: "orders",
    action: "s3:PutObject",
    resource: () => object(ordersBackup("archive.tar.zst")),
    context: () => ({ "s3:x-amz-server-side-encryption": "AES256" }),
    expect: "Denied",
  },
  "replica PutObject with another KMS key": {
    who: "orders",
    action: "s3:PutObject",
    resource: () => object(ordersBackup("archive.tar.zst")),
    context: () => ({
      "s3:x-amz-server-side-encryption": "aws:kms",
      "s3:x-amz-server-side-encryption-aws-kms-key-id": `arn:aws:kms:${DEFAULT_REGION}:${ACCOUNT_ID}:key/someone-elses`,
    }),
    expect: "Denied",
  },
  "replica PutObject into another cluster's prefix": {
    who: "orders",
    action: "s3:PutObject",
    resource: () => object(billingBackup("archive.tar.zst")),
    context: sseKms,
    expect: "Denied",
  },
  "other replica PutObject into orders' prefix": {
    who: "billing",
    action: "s3:PutObject",
    resource: () => object(ordersBackup("manifest.json")),
    context: sseKms,
    expect: "Denied",
  },
  "replica PutObject outside the backup prefix": {
    who: "orders",
    action: "s3:PutObject",
    resource: () => object("artifacts/mysql-backup/evil.cjs"),
    context: sseKms,
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
  "replica ListBucket": {
    who: "orders",
    action: "s3:ListBucket",
    resource: () => p.bucketArn,
    expect: "Denied",
  },
  "replica SendMessage to the verification queue": {
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
  // The verifier: reads backups and artifacts, writes only verification.json, tags verdicts, consumes.
  "verifier GetObject archive": {
    who: "verifier",
    action: "s3:GetObject",
    resource: () => object(ordersBackup("archive.tar.zst")),
    expect: "Allowed",
  },
  "verifier GetObject manifest of another cluster": {
    who: "verifier",
    action: "s3:GetObject",
    resource: () => object(billingBackup("manifest.json")),
    expect: "Allowed",
  },
  "verifier GetObject the bundle artifact": {
    who: "verifier",
    action: "s3:GetObject",
    resource: () => object(`artifacts/mysql-backup/${"a".repeat(64)}.cjs`),
    expect: "Allowed",
  },
  "verifier ListBucket under the prefix": {
    who: "verifier",
    action: "s3:ListBucket",
    resource: () => p.bucketArn,
    context: () => ({ "s3:prefix": "backups/orders/" }),
    expect: "Allowed",
  },
  "verifier PutObject verification.json": {
    who: "verifier",
    action: "s3:PutObject",
    resource: () => object(ordersBackup("verification.json")),
    context: sseKms,
    expect: "Allowed",
  },
  "verifier PutObject manifest.json": {
    who: "verifier",
    action: "s3:PutObject",
    resource: () => object(ordersBackup("manifest.json")),
    context: sseKms,
    expect: "Denied",
  },
  "verifier PutObject archive": {
    who: "verifier",
    action: "s3:PutObject",
    resource: () => object(ordersBackup("archive.tar.zst")),
    context: sseKms,
    expect: "Denied",
  },
  "verifier PutObjectTagging verified=": {
    who: "verifier",
    action: "s3:PutObjectTagging",
    resource: () => object(ordersBackup("archive.tar.zst")),
    context: () => ({ "s3:RequestObjectTagKeys": ["verified"] }),
    expect: "Allowed",
  },
  "verifier PutObjectTagging with another tag key": {
    who: "verifier",
    action: "s3:PutObjectTagging",
    resource: () => object(ordersBackup("archive.tar.zst")),
    context: () => ({ "s3:RequestObjectTagKeys": ["verified", "retain-forever"] }),
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
  // Nobody anonymous, nothing over plain HTTP or old TLS, even for an allowed action.
  "anonymous GetObject": {
    who: "anonymous",
    action: "s3:GetObject",
    resource: () => object(ordersBackup("archive.tar.zst")),
    expect: "Denied",
  },
  "anonymous PutObject": {
    who: "anonymous",
    action: "s3:PutObject",
    resource: () => object(ordersBackup("archive.tar.zst")),
    context: sseKms,
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
    action: "s3:PutObject",
    resource: () => object(ordersBackup("archive.tar.zst")),
    context: () => ({ ...sseKms(), "aws:SecureTransport": "false" }),
    expect: "Denied",
  },
  "replica PutObject over TLS 1.1": {
    who: "orders",
    action: "s3:PutObject",
    resource: () => object(ordersBackup("archive.tar.zst")),
    context: () => ({ ...sseKms(), "s3:TlsVersion": "1.1" }),
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

describe("IAM matrix (policies as the prod stack registers them)", () => {
  test("the matrix covers every role and anonymous, allowed and denied", () => {
    const entries = Object.values(cases);
    for (const who of ["orders", "billing", "verifier", "anonymous"]) {
      expect(entries.some((c) => c.who === who)).toBe(true);
    }
    expect(entries.filter((c) => c.expect === "Allowed").length).toBeGreaterThan(10);
    expect(entries.filter((c) => c.expect === "Denied").length).toBeGreaterThan(30);
  });

  test.each(Object.entries(cases))("%s", async (_name, c) => {
    expect(await decide(c.who, c.action, c.resource(), c.context?.() ?? {})).toBe(c.expect);
  });
});
