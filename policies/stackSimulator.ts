/**
 * Runs Pulumi programs under `pulumi.runtime.setMocks` and records every resource they register.
 *
 * Shared by the infrastructure tests (tests/infra) and the policy pack (tests/policy, policies/run.ts),
 * so both judge exactly the resources the real stack program registers. Only the cloud is mocked:
 * the program, the components and their inputs are the real ones.
 *
 * Pulumi's runtime is process-global; runs are serialised here and each one installs a fresh mock
 * monitor and a fresh config map, so a run never sees the resources or config of the previous one.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { parse as parseYaml } from "yaml";

/** One `registerResource` call as the engine would have received it. */
export interface RegisteredResource {
  /** The type token, e.g. `aws:s3/bucket:Bucket` or `mysql-backup-pipeline:index:BackupBucket`. */
  type: string;
  /** The logical name passed to the constructor. */
  name: string;
  /** The URN the mock engine assigned (parent types are folded in, as the real engine does). */
  urn: string;
  /** The resolved inputs (secrets unwrapped to their plain value; see `secretPaths`). */
  inputs: Record<string, unknown>;
  /** The parent's URN; absent for resources registered at the top of the program. */
  parent?: string;
  /** The explicit provider reference, if any. */
  provider?: string;
  /** True for custom (cloud) resources, false for components. */
  custom: boolean;
  /** Dotted paths of inputs that were marked secret, e.g. `connection`. */
  secretPaths: string[];
  /** Resource options that matter to safety reviews. */
  options: { protect: boolean; deleteBeforeReplace: boolean; retainOnDelete: boolean; dependsOn: string[] };
  /** The id the mock provider returned (custom resources only). */
  id?: string;
  /** The state the mock provider returned: the inputs echoed plus computed outputs (arn, url, name…), secrets unwrapped. */
  state: Record<string, unknown>;
}

/** What a whole run produced: every registration plus the program's outputs, resolved. */
export interface StackRun {
  resources: RegisteredResource[];
  /** The values the stack program returned (its stack outputs), with Outputs resolved. */
  outputs: Record<string, unknown>;
  /** Stack outputs that are secret (their values are still resolved in `outputs`, for assertions). */
  secretOutputs: string[];
  /** Every data-source call (invoke) the program made, with its arguments. */
  calls: MockedCall[];
}

/** One invoke, e.g. `aws:ec2/getAmi:getAmi` with its filters. */
export interface MockedCall {
  token: string;
  inputs: Record<string, unknown>;
}

/** The project file next to index.ts. */
export const PROJECT_ROOT = path.resolve(__dirname, "..");
/** The account every mocked ARN and caller identity belongs to. */
export const ACCOUNT_ID = "123456789012";
/** The region of mocked ARNs and of `aws.getRegion` (the example stacks use eu-west-1). */
export const DEFAULT_REGION = "eu-west-1";

/** When every mocked IAM role was created (`createDate`): alarms count their grace window from it. */
export const MOCK_ROLE_CREATED = "2026-11-20T09:30:00Z";

/**
 * The mocked network: each subnet `subnet-X` is associated with the route table `rtb-X`, and every looked-up
 * S3 gateway endpoint serves the route tables of the example stacks' subnets.
 */
export const MOCK_ENDPOINT_ROUTE_TABLES = [
  "rtb-0a1b2c3d4e5f60708",
  "rtb-0b1c2d3e4f5a60718",
  "rtb-0c1d2e3f4a5b60728",
];

/** A stand-in for a secret config value: the ciphertext in Pulumi.<stack>.yaml cannot be decrypted here. */
export const MOCK_SECRET_PREFIX = "mock-secret:";

/** The secret sentinel of Pulumi's wire format (sdk/nodejs/runtime/rpc.ts). */
const SPECIAL_SIG_KEY = "4dabf18193072939515e22adb298388d";
const SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270";

let queue: Promise<unknown> = Promise.resolve();

/** Runs `fn` after every earlier run finished: the Pulumi runtime holds one program at a time. */
function serialised<T>(fn: () => Promise<T>): Promise<T> {
  const next = queue.then(fn, fn);
  queue = next.catch(() => undefined);
  return next;
}

interface ProjectFile {
  name: string;
  config?: Record<string, { default?: unknown; secret?: boolean }>;
}

function projectFile(): ProjectFile {
  return parseYaml(fs.readFileSync(path.join(PROJECT_ROOT, "Pulumi.yaml"), "utf8")) as ProjectFile;
}

function projectName(): string {
  return projectFile().name;
}

/** A stable fake id from a name, so ARNs and ids look like the real ones. */
function fakeId(seed: string, length = 17): string {
  let h = 2166136261;
  for (const c of seed) h = Math.imul(h ^ c.charCodeAt(0), 16777619) >>> 0;
  let out = "";
  while (out.length < length) {
    h = Math.imul(h ^ out.length, 2654435761) >>> 0;
    out += h.toString(16);
  }
  return out.slice(0, length);
}

function regionOf(inputs: Record<string, unknown>): string {
  return typeof inputs.region === "string" ? inputs.region : DEFAULT_REGION;
}

/** Provider-computed outputs for the resource types the pipeline registers; inputs echo through. */
function mockState(type: string, name: string, inputs: Record<string, unknown>): Record<string, unknown> {
  const region = regionOf(inputs);
  const physical = `${name}-${fakeId(type + name, 7)}`;
  switch (type) {
    case "aws:s3/bucket:Bucket": {
      const bucket = (inputs.bucket as string) ?? physical.toLowerCase();
      return { bucket, arn: `arn:aws:s3:::${bucket}`, region, id: bucket };
    }
    case "aws:kms/key:Key": {
      const keyId = `${fakeId(name, 8)}-${fakeId(name + "1", 4)}-${fakeId(name + "2", 4)}-${fakeId(name + "3", 4)}-${fakeId(name + "4", 12)}`;
      return { keyId, arn: `arn:aws:kms:${region}:${ACCOUNT_ID}:key/${keyId}` };
    }
    case "aws:kms/alias:Alias":
      return { arn: `arn:aws:kms:${region}:${ACCOUNT_ID}:${inputs.name ?? `alias/${physical}`}` };
    case "aws:sqs/queue:Queue": {
      const queueName = (inputs.name as string) ?? physical;
      return {
        name: queueName,
        arn: `arn:aws:sqs:${region}:${ACCOUNT_ID}:${queueName}`,
        url: `https://sqs.${region}.amazonaws.com/${ACCOUNT_ID}/${queueName}`,
      };
    }
    case "aws:iam/role:Role":
    case "aws:iam/instanceProfile:InstanceProfile": {
      const kind = type.endsWith("Role") ? "role" : "instance-profile";
      const roleName = (inputs.name as string) ?? physical;
      return {
        name: roleName,
        arn: `arn:aws:iam::${ACCOUNT_ID}:${kind}/${roleName}`,
        uniqueId: fakeId(name),
        ...(kind === "role" ? { createDate: MOCK_ROLE_CREATED } : {}),
      };
    }
    case "aws:sns/topic:Topic": {
      const topicName = (inputs.name as string) ?? physical;
      return { name: topicName, arn: `arn:aws:sns:${region}:${ACCOUNT_ID}:${topicName}` };
    }
    case "aws:ec2/launchTemplate:LaunchTemplate":
      return {
        arn: `arn:aws:ec2:${region}:${ACCOUNT_ID}:launch-template/lt-${fakeId(name)}`,
        latestVersion: 1,
      };
    case "aws:autoscaling/group:Group": {
      const groupName = (inputs.name as string) ?? physical;
      return {
        name: groupName,
        arn: `arn:aws:autoscaling:${region}:${ACCOUNT_ID}:autoScalingGroup:${fakeId(name)}:autoScalingGroupName/${groupName}`,
      };
    }
    case "aws:autoscaling/policy:Policy":
      return {
        arn: `arn:aws:autoscaling:${region}:${ACCOUNT_ID}:scalingPolicy:${fakeId(name)}:policyName/${physical}`,
      };
    case "aws:cloudwatch/metricAlarm:MetricAlarm":
      return { arn: `arn:aws:cloudwatch:${region}:${ACCOUNT_ID}:alarm:${inputs.name ?? physical}` };
    case "aws:s3/bucketObjectv2:BucketObjectv2":
      // S3 gives every write a new version id; the content (sourceHash) stands in for the write here.
      return { versionId: `v-${fakeId(`${name}:${String(inputs.sourceHash ?? "")}`, 24)}` };
    case "aws:cloudwatch/logGroup:LogGroup":
      return { arn: `arn:aws:logs:${region}:${ACCOUNT_ID}:log-group:${String(inputs.name)}` };
    case "aws:ec2/vpcEndpoint:VpcEndpoint":
      return {
        id: `vpce-${fakeId(name)}`,
        arn: `arn:aws:ec2:${region}:${ACCOUNT_ID}:vpc-endpoint/vpce-${fakeId(name)}`,
      };
    case "aws:cloudwatch/dashboard:Dashboard":
      return { dashboardArn: `arn:aws:cloudwatch::${ACCOUNT_ID}:dashboard/${inputs.dashboardName}` };
    default:
      return {};
  }
}

/** Answers the data-source calls the components may make (account, region, partition, AMI, network). */
function mockCall(token: string, inputs: Record<string, unknown>): Record<string, unknown> {
  switch (token) {
    case "aws:index/getCallerIdentity:getCallerIdentity":
      return { accountId: ACCOUNT_ID, arn: `arn:aws:iam::${ACCOUNT_ID}:user/deployer`, userId: "AIDAMOCK" };
    case "aws:index/getRegion:getRegion":
      return { name: DEFAULT_REGION, region: DEFAULT_REGION, id: DEFAULT_REGION };
    case "aws:index/getPartition:getPartition":
      return { partition: "aws", dnsSuffix: "amazonaws.com", id: "aws" };
    case "aws:ec2/getAmi:getAmi": {
      const filters = (inputs.filters ?? []) as Array<{ name: string; values: string[] }>;
      const pinned = filters.find((f) => f.name === "image-id")?.values[0];
      const id = pinned ?? "ami-0mock0lookup0000";
      // A pinned image boots from another device than the looked-up Debian one, as images do differ.
      return {
        id,
        imageId: id,
        name: "debian-12-amd64-mock",
        rootDeviceName: pinned ? "/dev/sda1" : "/dev/xvda",
      };
    }
    case "aws:ec2/getRouteTable:getRouteTable": {
      const subnetId = String(inputs.subnetId);
      return {
        id: subnetId.replace(/^subnet-/, "rtb-"),
        routeTableId: subnetId.replace(/^subnet-/, "rtb-"),
        subnetId,
      };
    }
    case "aws:ec2/getVpcEndpoint:getVpcEndpoint":
      return {
        id: String(inputs.id),
        vpcEndpointType: "Gateway",
        serviceName: `com.amazonaws.${DEFAULT_REGION}.s3`,
        routeTableIds: MOCK_ENDPOINT_ROUTE_TABLES,
      };
    default:
      throw new Error(`stackSimulator: no mock for the call ${token}; add one in policies/stackSimulator.ts`);
  }
}

/** Dotted paths of secret values in deserialised inputs (Pulumi keeps secrets wrapped there). */
function secretPathsOf(value: unknown, prefix = ""): string[] {
  if (value === null || typeof value !== "object") return [];
  const record = value as Record<string, unknown>;
  if (record[SPECIAL_SIG_KEY] === SECRET_SIG) return [prefix || "(root)"];
  return Object.entries(record).flatMap(([k, v]) =>
    secretPathsOf(v, Array.isArray(value) ? `${prefix}[${k}]` : prefix ? `${prefix}.${k}` : k),
  );
}

/** The same value with every secret wrapper replaced by the value it protects. */
function unwrapSecrets(value: unknown): unknown {
  // Asset contents are promises: keep them for resolveAssets, never walk into them.
  if (value === null || typeof value !== "object" || isThenable(value)) return value;
  if (Array.isArray(value)) return value.map(unwrapSecrets);
  const record = value as Record<string, unknown>;
  if (record[SPECIAL_SIG_KEY] === SECRET_SIG) return unwrapSecrets(record.value);
  return Object.fromEntries(Object.entries(record).map(([k, v]) => [k, unwrapSecrets(v)]));
}

interface WireRequest {
  getType(): string;
  getName(): string;
  getParent(): string;
  getProvider(): string;
  getCustom(): boolean;
  getObject(): Parameters<typeof pulumi.runtime.deserializeProperties>[0] | undefined;
  getProtect(): boolean | undefined;
  getDeletebeforereplace(): boolean;
  getRetainondelete(): boolean | undefined;
  getDependenciesList(): string[];
}
interface WireResponse {
  getUrn(): string;
  getId(): string;
  getObject(): Parameters<typeof pulumi.runtime.deserializeProperties>[0] | undefined;
}
type Callback = (err: unknown, response: WireResponse | undefined) => void;
interface MonitorWithRegister {
  registerResource(req: WireRequest, callback: Callback): Promise<void>;
}

function stateOf(response: WireResponse): Record<string, unknown> {
  const wire = response.getObject();
  return wire ? (pulumi.runtime.deserializeProperties(wire) as Record<string, unknown>) : {};
}

/** Wraps the mock monitor so each registration is recorded with its parent, URN and secret paths. */
function recordRegistrations(records: RegisteredResource[]): void {
  const monitor = pulumi.runtime.getMonitor() as unknown as MonitorWithRegister;
  const register = monitor.registerResource.bind(monitor);
  monitor.registerResource = (req, callback) =>
    register(req, (err, response) => {
      if (!err && response) {
        const wire = req.getObject();
        const inputs = wire ? pulumi.runtime.deserializeProperties(wire) : {};
        records.push({
          type: req.getType(),
          name: req.getName(),
          urn: response.getUrn(),
          inputs: unwrapSecrets(inputs) as Record<string, unknown>,
          parent: req.getParent() || undefined,
          provider: req.getProvider() || undefined,
          custom: req.getCustom(),
          secretPaths: secretPathsOf(inputs),
          options: {
            protect: req.getProtect() ?? false,
            deleteBeforeReplace: req.getDeletebeforereplace(),
            retainOnDelete: req.getRetainondelete() ?? false,
            dependsOn: req.getDependenciesList(),
          },
          ...(response.getId() ? { id: response.getId() } : {}),
          state: unwrapSecrets(stateOf(response)) as Record<string, unknown>,
        });
      }
      callback(err, response);
    });
}

async function installMocks(
  stack: string,
  records: RegisteredResource[],
  calls: MockedCall[],
): Promise<void> {
  await pulumi.runtime.setMocks(
    {
      newResource: (args) => {
        const inputs = unwrapSecrets(args.inputs) as Record<string, unknown>;
        // Echo the wire inputs (secrets stay wrapped, so derived outputs stay secret) plus computed outputs.
        const state = {
          ...(args.inputs as Record<string, unknown>),
          ...mockState(args.type, args.name, inputs),
        };
        const id =
          args.custom === false
            ? undefined
            : ((state.id as string) ?? `${args.name}-${fakeId(args.type + args.name, 8)}`);
        return { id, state };
      },
      call: (args) => {
        calls.push({ token: args.token, inputs: unwrapSecrets(args.inputs) as Record<string, unknown> });
        return mockCall(args.token, unwrapSecrets(args.inputs) as Record<string, unknown>);
      },
    },
    projectName(),
    stack,
    false,
  );
  recordRegistrations(records);
}

/** Pulumi's internal "wait until every RPC drained" (exported by runtime/settings but not typed). */
async function settle(): Promise<void> {
  const runtime = pulumi.runtime as unknown as { waitForRPCs?: () => Promise<void> };
  if (!runtime.waitForRPCs) throw new Error("@pulumi/pulumi no longer exports runtime.waitForRPCs");
  // Outputs can register more resources after the first drain (apply callbacks); drain until quiet.
  let before = -1;
  for (let i = 0; i < 50; i++) {
    await runtime.waitForRPCs();
    await new Promise((r) => setImmediate(r));
    const now = (pulumi.runtime.getMonitor() as unknown as { resources: Map<string, unknown> }).resources
      .size;
    if (now === before) return;
    before = now;
  }
}

/** Resolves every Output nested in a value and tells which top-level keys were secret. */
async function resolveOutputs(
  value: unknown,
): Promise<{ outputs: Record<string, unknown>; secret: string[] }> {
  if (value === undefined || value === null) return { outputs: {}, secret: [] };
  // All at once: an output that fails (a check in an `apply`) fails the run, as it fails `pulumi up`,
  // even while outputs of resources that depend on the failure never resolve.
  const resolved = await Promise.all(
    Object.entries(value as Record<string, unknown>).map(async ([k, v]) => {
      const out = pulumi.output(v as pulumi.Input<string>) as unknown as {
        isSecret: Promise<boolean>;
        isKnown: Promise<boolean>;
        promise(): Promise<unknown>;
      };
      // Every promise of the Output awaited at once: when it fails, none of them is left unhandled.
      const [value, isSecret] = await Promise.all([out.promise(), out.isSecret, out.isKnown]);
      return { k, value, isSecret };
    }),
  );
  return {
    outputs: Object.fromEntries(resolved.map((r) => [r.k, r.value])),
    secret: resolved.filter((r) => r.isSecret).map((r) => r.k),
  };
}

/**
 * Assets arrive as `{ __pulumiAsset: true, text | path | uri: Promise<string> }`; resolve them so
 * recorded inputs are plain data (e.g. `source.text` is the file content a CopyToRemote ships).
 */
async function resolveAssets(value: unknown): Promise<unknown> {
  if (value === null || typeof value !== "object") return value;
  if (Array.isArray(value)) return Promise.all(value.map(resolveAssets));
  const entries = await Promise.all(
    Object.entries(value as Record<string, unknown>).map(
      async ([k, v]) => [k, isThenable(v) ? await v : await resolveAssets(v)] as const,
    ),
  );
  return Object.fromEntries(entries);
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return typeof v === "object" && v !== null && typeof (v as { then?: unknown }).then === "function";
}

/** Pulumi stores every config value as a string; structured values as JSON. */
function configString(value: unknown): string {
  return typeof value === "string" ? value : JSON.stringify(value);
}

/** Reads a `Pulumi.<stack>.yaml`, replacing `secure:` ciphertexts with recognisable stand-ins. */
export function readStackConfig(
  stackConfigFile: string,
  overrides: Record<string, unknown> = {},
): { config: Record<string, string>; secretKeys: string[] } {
  const file = path.isAbsolute(stackConfigFile) ? stackConfigFile : path.join(PROJECT_ROOT, stackConfigFile);
  const doc = (parseYaml(fs.readFileSync(file, "utf8")) ?? {}) as { config?: Record<string, unknown> };
  const project = projectName();
  const config: Record<string, string> = {};
  const secretKeys: string[] = [];
  const entries = { ...(doc.config ?? {}) };
  const removed = new Set<string>();
  for (const [k, v] of Object.entries(overrides)) {
    const key = k.includes(":") ? k : `${project}:${k}`;
    if (v === undefined) {
      delete entries[key];
      removed.add(key);
    } else entries[key] = v;
  }
  // What the CLI adds: the project's declared defaults for keys the stack file leaves out.
  for (const [k, declared] of Object.entries(projectFile().config ?? {})) {
    const key = `${project}:${k}`;
    if (!(key in entries) && declared.default !== undefined) entries[key] = declared.default;
  }
  for (const [key, value] of Object.entries(entries)) {
    const isSecure = typeof value === "object" && value !== null && "secure" in value;
    config[key] = isSecure ? `${MOCK_SECRET_PREFIX}${key}` : configString(value);
    if (isSecure) secretKeys.push(key);
  }
  // The secrets an operator sets with `pulumi config set --secret` (never stored in clear in the
  // examples): the project's declared secret keys and every key a replica names in `sshKeyConfig`.
  for (const key of operatorSecretKeys(project, entries)) {
    if (!(key in config) && !removed.has(key)) {
      config[key] = `${MOCK_SECRET_PREFIX}${key}`;
      secretKeys.push(key);
    }
  }
  return { config, secretKeys };
}

function operatorSecretKeys(project: string, entries: Record<string, unknown>): string[] {
  const declared = Object.entries(projectFile().config ?? {})
    .filter(([, d]) => d.secret)
    .map(([k]) => `${project}:${k}`);
  const clusters = entries[`${project}:clusters`];
  const named = Array.isArray(clusters)
    ? clusters.flatMap((c: { replicas?: Array<{ sshKeyConfig?: unknown }> }) =>
        (c.replicas ?? []).flatMap((r) =>
          typeof r.sshKeyConfig === "string" ? [`${project}:${r.sshKeyConfig}`] : [],
        ),
      )
    : [];
  return [...declared, ...named];
}

function stackNameOf(stackConfigFile: string): string {
  const match = /Pulumi\.([^./]+)\.yaml$/.exec(stackConfigFile);
  return match ? match[1] : "test";
}

async function run(
  stack: string,
  config: Record<string, string>,
  secretKeys: string[],
  program: () => unknown,
): Promise<StackRun> {
  const records: RegisteredResource[] = [];
  const calls: MockedCall[] = [];
  await installMocks(stack, records, calls);
  pulumi.runtime.setAllConfig(config, secretKeys);
  let resolved: Awaited<ReturnType<typeof resolveOutputs>>;
  try {
    resolved = await resolveOutputs(await program());
  } catch (error) {
    // A failed program still has registrations in flight; they must land in this run's mocks, not the next.
    await settle().catch(() => undefined);
    throw error;
  }
  await settle();
  const { outputs, secret } = resolved;
  for (const r of records) {
    r.inputs = (await resolveAssets(r.inputs)) as Record<string, unknown>;
    r.state = (await resolveAssets(r.state)) as Record<string, unknown>;
  }
  return { resources: records, outputs, secretOutputs: secret, calls };
}

/**
 * Runs the real stack program (index.ts) for a stack config file (e.g. `Pulumi.dev.yaml`) and returns
 * every registration and the stack outputs. `overrides` replace config keys (`key` or `project:key`);
 * an `undefined` value removes the key (also a secret the harness would otherwise stand in for).
 * Secure values, and the secrets an operator sets with `pulumi config set --secret` (the project's
 * declared secret keys and every `sshKeyConfig` a replica names), become `mock-secret:<key>`.
 */
export function simulateStack(
  stackConfigFile: string,
  overrides: Record<string, unknown> = {},
): Promise<StackRun> {
  return serialised(async () => {
    const { config, secretKeys } = readStackConfig(stackConfigFile, overrides);
    // index.ts exports the program as a function (Pulumi runs it); requiring it registers nothing.
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- the program module is a function export
    const program = require(path.join(PROJECT_ROOT, "index.ts")) as () => unknown;
    return run(stackNameOf(stackConfigFile), config, secretKeys, program);
  });
}

/** Runs the real stack program for a stack config file and returns every registration. */
export async function runStack(
  stackConfigFile: string,
  overrides: Record<string, unknown> = {},
): Promise<RegisteredResource[]> {
  return (await simulateStack(stackConfigFile, overrides)).resources;
}

/** Runs any program function (e.g. one component) under the mocks; `config` keys are `project:key`. */
export async function runProgram(
  program: () => unknown,
  config: Record<string, string> = {},
): Promise<RegisteredResource[]> {
  return (await simulateProgram(program, config)).resources;
}

/** Like `runProgram`, also returning what the program returned, resolved. */
export function simulateProgram(
  program: () => unknown,
  config: Record<string, string> = {},
): Promise<StackRun> {
  return serialised(() => run("test", config, [], program));
}
