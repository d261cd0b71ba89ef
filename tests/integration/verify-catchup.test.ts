/**
 * Optional replication catch-up in the verifier, against the lab: the restored scratch server replicates
 * from the lab primary (under write load) from the manifest's position and catches up; a replication
 * account that cannot log in is the verifier's problem (the message stays), not a verdict on the backup.
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PurgeQueueCommand } from "@aws-sdk/client-sqs";
import type { Lab } from "../../lab/lab";
import { withLab } from "../support/lab";
import {
  expectNoScratchLeft,
  labVerifyConfig,
  queueDepth,
  runLabVerifier,
  takeBackup,
  withClients,
} from "./verify-support";

jest.setTimeout(240_000);

const lab = withLab({ load: true });
let secrets: string;
beforeAll(async () => {
  secrets = await mkdtemp(join(tmpdir(), "catchup-"));
});
afterAll(() => rm(secrets, { recursive: true, force: true }));

/** An option file with the lab's replication account (read from the lab replica's master.info). */
async function replicationOptionFile(l: Lab, password?: string): Promise<string> {
  const lines = (await readFile(join(l.replica.datadir, "master.info"), "utf8")).split("\n");
  expect([lines[3], Number(lines[6])]).toEqual(["127.0.0.1", l.primary.port]);
  const path = join(secrets, `repl-${password ?? "right"}.cnf`);
  const ini = `[client]\nhost=127.0.0.1\nport=${l.primary.port}\nuser=${lines[4]}\npassword=${password ?? lines[5]}\n`;
  await writeFile(path, ini, { mode: 0o600 });
  return path;
}

test("the restored server replicates from the primary from the manifest's position and catches up", async () => {
  const backup = await takeBackup(lab());
  const base = await labVerifyConfig(lab());
  const config = {
    ...base,
    catchUp: { optionFile: await replicationOptionFile(lab()), timeoutSeconds: 120 },
  };
  const { result } = await runLabVerifier(lab(), { config });
  expect(result).toMatchObject({ outcome: "verified", backupId: backup.backupId, error: null });
  const replication = result.checks.find((c) => c.name === "replication");
  expect(replication).toMatchObject({ passed: true });
  expect(replication?.detail).toMatch(
    new RegExp(`^caught up with the source's 0-1-\\d+ in [\\d.]+s from ${backup.position.gtidSlavePos}$`),
  );
  // The primary kept writing after the backup: the target lies beyond the backup's position.
  const target = Number(/0-1-(\d+)/.exec(replication!.detail)![1]);
  expect(target).toBeGreaterThan(Number(backup.position.gtidSlavePos!.split("-")[2]));
  await expectNoScratchLeft(lab());
});

test("a replication account that cannot log in leaves the message for a retry, without a verdict", async () => {
  const backup = await takeBackup(lab());
  const base = await labVerifyConfig(lab());
  const config = {
    ...base,
    catchUp: { optionFile: await replicationOptionFile(lab(), "wrong"), timeoutSeconds: 60 },
  };
  const { result } = await runLabVerifier(lab(), { config });
  expect(result).toMatchObject({ outcome: "infrastructure", verdict: null, backupId: backup.backupId });
  expect(result.error?.message).toMatch(
    /catch-up: cannot connect to the catch-up source at 127\.0\.0\.1:\d+ as repl: Access denied/,
  );
  await withClients(lab(), async ({ sqs }) => {
    expect(await queueDepth(sqs, lab().sqs.queueUrl)).toBe(1);
    await sqs.send(new PurgeQueueCommand({ QueueUrl: lab().sqs.queueUrl }));
  });
  await expectNoScratchLeft(lab());
});
