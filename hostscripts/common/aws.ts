import { CloudWatchClient } from "@aws-sdk/client-cloudwatch";
import { S3Client } from "@aws-sdk/client-s3";
import { SQSClient } from "@aws-sdk/client-sqs";
import type { AwsSettings } from "../../contracts";
import { PipelineError } from "./errors";
import { readSecretIni } from "./ini";

/** The options every AWS client of the host scripts shares. */
export interface AwsClientOptions {
  region: string;
  endpoint?: string;
  forcePathStyle?: boolean;
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  maxAttempts: number;
}

/**
 * Client options from the config: the default credential chain (instance profile) unless the config
 * names a credentials file, which only the lab does. Region from the config, else AWS_REGION.
 */
export async function awsClientOptions(settings: AwsSettings = {}): Promise<AwsClientOptions> {
  const region = settings.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION;
  if (!region) {
    throw new PipelineError(
      "Config",
      "no AWS region: aws.region is not set in the config and AWS_REGION is empty",
      'set "aws": { "region": "eu-west-1" } in the config file',
    );
  }
  const options: AwsClientOptions = { region, maxAttempts: 5 };
  if (settings.endpoint) options.endpoint = settings.endpoint;
  if (settings.forcePathStyle !== undefined) options.forcePathStyle = settings.forcePathStyle;
  if (settings.credentialsFile) {
    const profile = (await readSecretIni(settings.credentialsFile, "AWS credentials file")).default ?? {};
    const accessKeyId = profile["aws-access-key-id"];
    const secretAccessKey = profile["aws-secret-access-key"];
    if (!accessKeyId || !secretAccessKey) {
      throw new PipelineError(
        "Config",
        `AWS credentials file ${settings.credentialsFile} has no [default] aws_access_key_id / aws_secret_access_key`,
        "add both keys under [default], or remove aws.credentialsFile to use the instance profile",
      );
    }
    options.credentials = { accessKeyId, secretAccessKey };
    if (profile["aws-session-token"]) options.credentials.sessionToken = profile["aws-session-token"];
  }
  return options;
}

/** The three clients the host scripts use, built once per run from the same options. */
export interface AwsClients {
  s3: S3Client;
  sqs: SQSClient;
  cloudwatch: CloudWatchClient;
}

export async function createAwsClients(settings?: AwsSettings): Promise<AwsClients> {
  const options = await awsClientOptions(settings);
  const { forcePathStyle, ...common } = options;
  return {
    s3: new S3Client({ ...common, forcePathStyle }),
    sqs: new SQSClient(common),
    cloudwatch: new CloudWatchClient(common),
  };
}
