/**
 * Backups written before format 2 stay restorable: a format 1 backup (one `archive.tar.zst`, every file
 * hashed whole, manifest `formatVersion` 1) made from a real backup of the lab replica is verified by the
 * verifier, its verdict binds its one archive object, and `restore` restores it from exactly that object.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { GetObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { PurgeQueueCommand, SendMessageCommand } from "@aws-sdk/client-sqs";
import { Upload } from "@aws-sdk/lib-storage";
import { $ } from "zx";
import {
  BACKUP_CREATED,
  archiveKey,
  isSplit,
  manifestKey,
  newBackupId,
  parseManifest,
  parseRestoreConfig,
  type BackupCreatedMessage,
  type BackupManifestV1,
} from "../../contracts";
import { memoryLogger } from "../../hostscripts/common/log";
import { chooseBackup, listBackups } from "../../hostscripts/restore/list";
import { restoreBackup } from "../../hostscripts/restore/restore";
import { labAwsClients } from "../../lab/lab";
import { withLab } from "../support/lab";
import { labVerifyConfig, runLabVerifier, takeBackup, withClients } from "./verify-support";

jest.setTimeout(300_000);

const lab = withLab();
const run = promisify(execFile);
const sha = (data: Buffer) => createHash("sha256").update(data).digest("hex");

test("a format 1 backup is verified, bound to its one archive object, and restored from it", async () => {
  const v2 = await takeBackup(lab());
  expect(v2.chunks.length).toBeGreaterThan(1);
  const work = await mkdtemp(join(tmpdir(), "format-v1-"));
  try {
    // The chunks concatenated are one tar+zstd stream: exactly what a format 1 archive is.
    const archive = Buffer.concat(await Promise.all(v2.localArchives.map((path) => readFile(path))));
    const file = join(work, "archive.tar.zst");
    await writeFile(file, archive);
    const unpacked = join(work, "unpacked");
    await run("bash", ["-c", 'mkdir "$1" && zstd -d -c "$2" | tar -x -C "$1"', "_", unpacked, file]);
    const written = await withClients(lab(), async ({ s3 }) =>
      parseManifest(
        JSON.parse(
          await (
            await s3.send(new GetObjectCommand({ Bucket: lab().s3.bucket, Key: v2.manifestKey }))
          ).Body!.transformToString(),
        ),
      ),
    );
    if (written.formatVersion !== 2) throw new Error("the backup wrote format 1");
    expect(written.files.some(isSplit)).toBe(true);
    const ref = { prefix: "backups", cluster: "lab", host: "replica1", backupId: newBackupId() };
    const files = [];
    for (const file of written.files) {
      files.push({
        path: file.path,
        bytes: file.bytes,
        sha256: isSplit(file) ? sha(await readFile(join(unpacked, file.path))) : file.sha256,
      });
    }
    const { chunks: _chunks, chunkBytes: _chunkBytes, ...common } = written.archive;
    const v1: BackupManifestV1 = {
      ...written,
      formatVersion: 1,
      backupId: ref.backupId,
      archive: { ...common, key: archiveKey(ref), bytes: archive.length, sha256: sha(archive) },
      files,
    };
    const message: BackupCreatedMessage = {
      type: BACKUP_CREATED,
      version: 1,
      bucket: lab().s3.bucket,
      manifestKey: manifestKey(ref),
      backupId: ref.backupId,
      cluster: "lab",
      host: "replica1",
      createdAt: v1.completedAt,
      archiveSha256: v1.archive.sha256,
    };
    await withClients(lab(), async ({ s3, sqs }) => {
      await sqs.send(new PurgeQueueCommand({ QueueUrl: lab().sqs.queueUrl }));
      await new Upload({
        client: s3,
        params: { Bucket: lab().s3.bucket, Key: v1.archive.key, Body: archive },
        partSize: 5 * 1024 * 1024,
      }).done();
      const body = JSON.stringify(parseManifest(v1), null, 2);
      await s3.send(new PutObjectCommand({ Bucket: lab().s3.bucket, Key: message.manifestKey, Body: body }));
      await sqs.send(
        new SendMessageCommand({ QueueUrl: lab().sqs.queueUrl, MessageBody: JSON.stringify(message) }),
      );
    });

    const { result } = await runLabVerifier(lab());
    expect(result).toMatchObject({ outcome: "verified", backupId: ref.backupId });
    expect(result.checks[0].detail).toMatch(
      `archive sha256 ${sha(archive)} matches (${archive.length} bytes)`,
    );
    expect(result.report?.objects?.archive).toMatchObject({ key: v1.archive.key, sha256: sha(archive) });
    expect(result.report?.objects?.chunks).toBeUndefined();

    const config = parseRestoreConfig({
      ...(await labVerifyConfig(lab())),
      restore: { bucket: lab().s3.bucket, prefix: "backups", cluster: "lab" },
    });
    const { s3 } = labAwsClients(lab());
    const target = join(work, "target");
    try {
      const chosen = chooseBackup(await listBackups(s3, config.restore), ref.backupId, "lab");
      expect(chosen.objects?.archive?.sha256).toBe(sha(archive));
      const restored = await restoreBackup(config, chosen, target, false, {
        s3,
        log: memoryLogger(),
        $: $({ quiet: true }),
      });
      expect(restored.archiveBytes).toBe(archive.length);
    } finally {
      s3.destroy();
    }
    for (const file of files.slice(0, 20))
      expect(sha(await readFile(join(target, file.path)))).toBe(file.sha256);
    expect((await readdir(join(target, "data"))).length).toBeGreaterThan(0);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
});
