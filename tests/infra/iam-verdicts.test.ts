/**
 * Verdict kinds are a list in contracts/keys (VERDICT_OBJECTS): a new kind (binlog segment and chain
 * verdicts) must fall under the same rule by being added there, with no change in components/. The pure
 * policy functions take the list, so this builds them with a longer one and evaluates them.
 */
import {
  backupBucketPolicy,
  operatorRolePolicy,
  replicaRolePolicy,
  verifierRolePolicy,
} from "../../components";
import { isVerdictKey, VERDICT_OBJECTS } from "../../contracts";
import { ACCOUNT_ID, DEFAULT_REGION } from "../../policies/stackSimulator";
import { ADMIN_ARN, decide, type Policies } from "../support/iam";

const bucketArn = "arn:aws:s3:::mysql-backups-test";
const keyArn = `arn:aws:kms:${DEFAULT_REGION}:${ACCOUNT_ID}:key/test`;
const queueArn = `arn:aws:sqs:${DEFAULT_REGION}:${ACCOUNT_ID}:q`;
const logGroupArn = `arn:aws:logs:${DEFAULT_REGION}:${ACCOUNT_ID}:log-group:/mysql-backup/test`;
const verifierArn = `arn:aws:iam::${ACCOUNT_ID}:role/verifier`;
const future = [...VERDICT_OBJECTS, "*.future-verdict.json", "future-verification.json"];

function policies(verdictObjects: readonly string[]): Policies {
  const common = { bucketArn, keyArn, queueArn, region: DEFAULT_REGION, prefix: "backups", verdictObjects };
  return {
    bucketArn,
    keyArn,
    queueArn,
    logGroupArn,
    bucketPolicy: backupBucketPolicy({
      bucketArn,
      keyArn,
      prefix: "backups",
      verdictWriterArn: verifierArn,
      verdictObjects,
    }),
    keyPolicy: {},
    roles: {
      orders: {
        arn: `arn:aws:iam::${ACCOUNT_ID}:role/orders-db3`,
        policy: replicaRolePolicy({ ...common, cluster: "orders", host: "orders-db3" }),
      },
      billing: {
        arn: `arn:aws:iam::${ACCOUNT_ID}:role/billing-db2`,
        policy: replicaRolePolicy({ ...common, cluster: "billing", host: "billing-db2" }),
      },
      verifier: { arn: verifierArn, policy: verifierRolePolicy({ ...common, logGroupArn }) },
      operator: {
        arn: `arn:aws:iam::${ACCOUNT_ID}:role/operators`,
        policy: operatorRolePolicy({ bucketArn, keyArn, region: DEFAULT_REGION, prefix: "backups" }),
      },
      admin: {
        arn: ADMIN_ARN,
        policy: { Version: "2012-10-17", Statement: [{ Effect: "Allow", Action: "*", Resource: "*" }] },
      },
    },
  };
}

const created = { "s3:if-none-match": "*" };
const futureVerdict = `${bucketArn}/backups/orders/binlogs/5f1e/mariadb-bin.000042.future-verdict.json`;
const futureBackupVerdict = `${bucketArn}/backups/orders/orders-db3/20261124T020000Z-3fa9c1/future-verification.json`;

test.each([
  ["a wildcard verdict in the binlog archive", futureVerdict],
  ["a new verdict next to a backup", futureBackupVerdict],
])("a new verdict kind added to the list is the verifier's alone: %s", async (_what, key) => {
  const listed = policies(future);
  expect(await decide(listed, { who: "orders", action: "PutObject", resource: key, context: created })).toBe(
    "Denied",
  );
  expect(await decide(listed, { who: "admin", action: "PutObject", resource: key, context: created })).toBe(
    "Denied",
  );
  expect(
    await decide(listed, { who: "verifier", action: "PutObject", resource: key, context: created }),
  ).toBe("Allowed");
  // Before it is listed, the verifier may not write it and a replica's own prefix may: the list decides.
  const unlisted = policies(VERDICT_OBJECTS);
  expect(
    await decide(unlisted, { who: "verifier", action: "PutObject", resource: key, context: created }),
  ).toBe("Denied");
});

test("isVerdictKey recognises every listed name, wildcards included", () => {
  expect(isVerdictKey("backups/orders/orders-db3/20261124T020000Z-3fa9c1/verification.json")).toBe(true);
  expect(isVerdictKey("backups/orders/orders-db3/20261124T020000Z-3fa9c1/manifest.json")).toBe(false);
  expect(isVerdictKey("backups/orders/orders-db3/20261124T020000Z-3fa9c1/fooverification.json")).toBe(false);
});
