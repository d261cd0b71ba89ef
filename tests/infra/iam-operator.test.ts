/**
 * The operators' role (what `mysql-backup status` runs with) and the replica's part in `check`, evaluated with
 * @cloud-copilot/iam-simulate against the policies the real prod stack registers (tests/support/iam.ts): the
 * operator lists and reads the backups and can change nothing — no write, delete, version delete, tag,
 * retention, policy or queue action, no KMS use but decrypting through S3; a replica may read the queue's
 * attributes but still not receive or delete its messages, and may create its check probe below its own
 * prefix only as it creates backups (create-only, SSE-KMS with the bucket key).
 */
import {
  ACCOUNT_ID,
  DEFAULT_REGION,
  simulateStack,
  type RegisteredResource,
} from "../../policies/stackSimulator";
import { decide, prodPolicies, type Context, type Decision, type Policies, type Who } from "../support/iam";

let p: Policies;
beforeAll(async () => {
  p = await prodPolicies();
}, 120_000);

const object = (key: string) => `${p.bucketArn}/${key}`;
const backup = (name: string) => object(`backups/orders/orders-db3/20261124T020000Z-3fa9c1/${name}`);
const probe = (host: string) => object(`backups/orders/${host}/_check/20261124T020000Z-3fa9c1.json`);
const viaS3 = { "kms:ViaService": `s3.${DEFAULT_REGION}.amazonaws.com` };
const created = (): Context => ({
  "s3:x-amz-server-side-encryption": "aws:kms",
  "s3:x-amz-server-side-encryption-aws-kms-key-id": p.keyArn,
  "s3:if-none-match": "*",
});

const cases: Array<[string, Who, string, () => string, (() => Context) | null, Decision]> = [
  // What `status` needs.
  [
    "operator lists the backup prefix",
    "operator",
    "s3:ListBucket",
    () => p.bucketArn,
    () => ({ "s3:prefix": "backups/" }),
    "Allowed",
  ],
  [
    "operator lists a cluster",
    "operator",
    "s3:ListBucket",
    () => p.bucketArn,
    () => ({ "s3:prefix": "backups/orders/" }),
    "Allowed",
  ],
  ["operator reads a manifest", "operator", "s3:GetObject", () => backup("manifest.json"), null, "Allowed"],
  [
    "operator reads a verdict",
    "operator",
    "s3:GetObject",
    () => backup("verification.json"),
    null,
    "Allowed",
  ],
  ["operator decrypts through S3", "operator", "kms:Decrypt", () => p.keyArn, () => viaS3, "Allowed"],
  // Nothing it could change.
  [
    "operator creates an object",
    "operator",
    "PutObject",
    () => backup("verification.json"),
    created,
    "Denied",
  ],
  ["operator DeleteObject", "operator", "s3:DeleteObject", () => backup("archive.tar.zst"), null, "Denied"],
  [
    "operator DeleteObjectVersion",
    "operator",
    "s3:DeleteObjectVersion",
    () => backup("archive.tar.zst"),
    null,
    "Denied",
  ],
  [
    "operator PutObjectTagging",
    "operator",
    "s3:PutObjectTagging",
    () => backup("archive.tar.zst"),
    null,
    "Denied",
  ],
  [
    "operator PutObjectRetention",
    "operator",
    "s3:PutObjectRetention",
    () => backup("archive.tar.zst"),
    null,
    "Denied",
  ],
  [
    "operator BypassGovernanceRetention",
    "operator",
    "s3:BypassGovernanceRetention",
    () => backup("archive.tar.zst"),
    null,
    "Denied",
  ],
  ["operator PutBucketPolicy", "operator", "s3:PutBucketPolicy", () => p.bucketArn, null, "Denied"],
  [
    "operator PutLifecycleConfiguration",
    "operator",
    "s3:PutLifecycleConfiguration",
    () => p.bucketArn,
    null,
    "Denied",
  ],
  [
    "operator lists outside the backup prefix",
    "operator",
    "s3:ListBucket",
    () => p.bucketArn,
    () => ({ "s3:prefix": "artifacts/" }),
    "Denied",
  ],
  [
    "operator reads the verifier bundle",
    "operator",
    "s3:GetObject",
    () => object("artifacts/mysql-backup/mysql-backup.cjs"),
    null,
    "Denied",
  ],
  [
    "operator encrypts with the key",
    "operator",
    "kms:GenerateDataKey",
    () => p.keyArn,
    () => viaS3,
    "Denied",
  ],
  ["operator decrypts outside S3", "operator", "kms:Decrypt", () => p.keyArn, null, "Denied"],
  ["operator sends to the queue", "operator", "sqs:SendMessage", () => p.queueArn, null, "Denied"],
  ["operator purges the queue", "operator", "sqs:PurgeQueue", () => p.queueArn, null, "Denied"],
  // The replica's `check`: the queue answers, its messages stay the verifiers'; the probe is a create-only write.
  [
    "replica reads the queue's attributes",
    "orders",
    "sqs:GetQueueAttributes",
    () => p.queueArn,
    null,
    "Allowed",
  ],
  ["replica receives from the queue", "orders", "sqs:ReceiveMessage", () => p.queueArn, null, "Denied"],
  ["replica deletes a message", "orders", "sqs:DeleteMessage", () => p.queueArn, null, "Denied"],
  [
    "replica creates its check probe below its own prefix",
    "orders",
    "PutObject",
    () => probe("orders-db3"),
    created,
    "Allowed",
  ],
  [
    "replica creates a probe below another host's prefix",
    "orders",
    "PutObject",
    () => probe("orders-db9"),
    created,
    "Denied",
  ],
  [
    "replica overwrites a probe (no If-None-Match)",
    "orders",
    "PutObject",
    () => probe("orders-db3"),
    () => ({
      "s3:x-amz-server-side-encryption": "aws:kms",
      "s3:x-amz-server-side-encryption-aws-kms-key-id": p.keyArn,
    }),
    "Denied",
  ],
];

test.each(cases)("%s", async (_name, who, action, resource, context, expected) => {
  expect(await decide(p, { who, action, resource: resource(), context: context?.() })).toBe(expected);
});

function findOne(resources: RegisteredResource[], type: string, nameSuffix: string): RegisteredResource {
  const found = resources.filter((r) => r.type === type && r.name.endsWith(nameSuffix));
  if (found.length !== 1) throw new Error(`expected one ${type} named *${nameSuffix}, found ${found.length}`);
  return found[0];
}

test("the operator's trust names the stack's account only, and its policy allows no write of any kind", async () => {
  const { resources } = await simulateStack("Pulumi.prod.yaml");
  const role = findOne(resources, "aws:iam/role:Role", "-operators-role");
  expect(JSON.parse(role.inputs.assumeRolePolicy as string)).toEqual({
    Version: "2012-10-17",
    Statement: [
      {
        Sid: "AccountAssumeRole",
        Effect: "Allow",
        Principal: { AWS: `arn:aws:iam::${ACCOUNT_ID}:root` },
        Action: "sts:AssumeRole",
      },
    ],
  });
  const actions = (
    p.roles.operator.policy as { Statement: Array<{ Action: string | string[] }> }
  ).Statement.flatMap((s) => (Array.isArray(s.Action) ? s.Action : [s.Action]));
  expect(actions.sort()).toEqual(["kms:Decrypt", "s3:GetObject", "s3:ListBucket"]);
}, 60_000);
