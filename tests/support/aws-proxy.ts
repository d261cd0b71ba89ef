/**
 * What the S3 emulator cannot show, played in front of it: AWS's answers for the cloud we cannot reach. An
 * HTTP proxy on 127.0.0.1 passes every request to the emulator, except the S3 PUTs a rule answers as AWS
 * would — IAM refusing a key outside the role's grant, S3 refusing a KMS key the role may not use, S3 refusing
 * a create-only write of an existing object (which the emulator, fauxqs 1.9, does not enforce). The error
 * bodies are S3's XML, so the SDK raises what it raises against AWS.
 */
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/** How the stand-in answers. */
export interface AwsRules {
  /** Object keys the role may write: a PUT elsewhere is refused as IAM refuses it. Defaults to anywhere. */
  writableKeyPrefix?: string | string[];
  /** KMS key ids (the `x-amz-server-side-encryption-aws-kms-key-id` header) the role may not use. */
  deniedKmsKeys?: string[];
  /** Refuse a PUT with `If-None-Match: *` of an object that exists (412), as S3 does. Defaults to false. */
  conditionalWrites?: boolean;
}

/** A running stand-in. */
export interface AwsProxy {
  endpoint: string;
  rules: AwsRules;
  close(): Promise<void>;
}

const ROLE = "arn:aws:sts::123456789012:assumed-role/mysql-backup-replica/i-0123456789abcdef0";

/** Starts the proxy in front of `target` (the emulator's endpoint). Its rules may be changed while it runs. */
export async function startAwsProxy(target: string, rules: AwsRules = {}): Promise<AwsProxy> {
  const upstream = new URL(target);
  const proxy: AwsProxy = { endpoint: "", rules, close: async () => undefined };
  const server: Server = createServer((req, res) => {
    void answer(req, res, upstream, proxy.rules).catch((error: Error) => {
      res.writeHead(502).end(error.message);
    });
  });
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  proxy.endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  proxy.close = () => new Promise((done) => server.close(() => done()));
  return proxy;
}

async function answer(
  req: IncomingMessage,
  res: ServerResponse,
  upstream: URL,
  rules: AwsRules,
): Promise<void> {
  if (req.method === "PUT") {
    const refusal = await refusalOf(req, upstream, rules);
    if (refusal !== null) {
      req.resume();
      res
        .writeHead(refusal.status, { "content-type": "application/xml" })
        .end(s3Error(refusal.code, refusal.message));
      return;
    }
  }
  const forwarded = request(
    { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers },
    (response) => {
      res.writeHead(response.statusCode ?? 502, response.headers);
      response.pipe(res);
    },
  );
  forwarded.on("error", (error) => res.writeHead(502).end(error.message));
  req.pipe(forwarded);
}

async function refusalOf(
  req: IncomingMessage,
  upstream: URL,
  rules: AwsRules,
): Promise<{ status: number; code: string; message: string } | null> {
  const path = decodeURIComponent((req.url ?? "").split("?")[0]);
  const [, bucket, ...rest] = path.split("/");
  const key = rest.join("/");
  // A part of a multipart upload carries no SSE header and was allowed at CreateMultipartUpload.
  const isPart = /[?&]partNumber=/.test(req.url ?? "");
  const writable = rules.writableKeyPrefix === undefined ? undefined : [rules.writableKeyPrefix].flat();
  if (writable !== undefined && !writable.some((p) => key.startsWith(p))) {
    return {
      status: 403,
      code: "AccessDenied",
      message: `User: ${ROLE} is not authorized to perform: s3:PutObject on resource: "arn:aws:s3:::${bucket}/${key}" because no identity-based policy allows the s3:PutObject action`,
    };
  }
  const kmsKey = String(req.headers["x-amz-server-side-encryption-aws-kms-key-id"] ?? "");
  if (!isPart && kmsKey !== "" && (rules.deniedKmsKeys ?? []).includes(kmsKey)) {
    return {
      status: 403,
      code: "AccessDenied",
      message: `User: ${ROLE} is not authorized to perform: kms:GenerateDataKey on resource: ${kmsKey} because no identity-based policy allows the kms:GenerateDataKey action`,
    };
  }
  if (rules.conditionalWrites && req.headers["if-none-match"] === "*" && !isPart) {
    const exists = await new Promise<boolean>((done, fail) => {
      const objectPath = (req.url ?? "").split("?")[0];
      const head = request(
        { host: upstream.hostname, port: upstream.port, method: "HEAD", path: objectPath },
        (r) => {
          r.resume();
          done(r.statusCode === 200);
        },
      );
      head.on("error", fail);
      head.end();
    });
    if (exists) {
      return {
        status: 412,
        code: "PreconditionFailed",
        message: "At least one of the pre-conditions you specified did not hold",
      };
    }
  }
  return null;
}

function s3Error(code: string, message: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/"/g, "&quot;")}</Message><RequestId>0000000000000000</RequestId><HostId>stand-in</HostId></Error>`;
}
