/**
 * S3's create-only writes for the lab's emulator. fauxqs 1.9.2 ignores `If-None-Match: *` on PutObject and
 * on CompleteMultipartUpload alike and overwrites (checked in its source and by backup.test.ts), so a test
 * that needs S3's answer to a taken key adds this middleware to its client: before a call that carries the
 * header, a HEAD of the key; when an object is there, the call fails as S3 fails it (412
 * PreconditionFailed) and never reaches the emulator. Only AWS's side is played here; the code under test
 * sends its real requests and reads the real objects.
 */
import { HeadObjectCommand, type S3Client } from "@aws-sdk/client-s3";

const CREATE_ONLY_COMMANDS = new Set(["PutObjectCommand", "CompleteMultipartUploadCommand"]);

/** Adds the create-only check to `s3` (see the module comment); returns it. */
export function enforceCreateOnly(s3: S3Client): S3Client {
  s3.middlewareStack.add(
    (next, context) => async (args) => {
      const input = args.input as { Bucket?: string; Key?: string; IfNoneMatch?: string };
      if (input.IfNoneMatch === "*" && CREATE_ONLY_COMMANDS.has(context.commandName ?? "")) {
        const taken = await s3.send(new HeadObjectCommand({ Bucket: input.Bucket, Key: input.Key })).then(
          () => true,
          () => false,
        );
        if (taken) throw preconditionFailed();
      }
      return next(args);
    },
    { step: "initialize", name: "enforceCreateOnly" },
  );
  return s3;
}

/** The error the SDK raises for S3's 412 answer. */
function preconditionFailed(): Error {
  return Object.assign(new Error("At least one of the pre-conditions you specified did not hold"), {
    name: "PreconditionFailed",
    $fault: "client",
    $metadata: { httpStatusCode: 412 },
  });
}
