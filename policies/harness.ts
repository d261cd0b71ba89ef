import type {
  EnforcementLevel,
  Policies,
  PolicyConfigSchema,
  PolicyPackConfig,
  PolicyProviderResource,
  PolicyResource,
  PolicyResourceOptions,
  ReportViolation,
  ResourceValidation,
  ResourceValidationArgs,
  ResourceValidationPolicy,
  Severity,
  StackValidationArgs,
  StackValidationPolicy,
} from "@pulumi/policy";

/**
 * The offline policy engine: runs the pack's rules over recorded resource registrations the way the
 * Pulumi CLI's analyzer host does (`@pulumi/policy`'s server.js), without the CLI or gRPC:
 * - resource rules see each resource's inputs, stack rules see every resource at once;
 * - the enforcement level is the config's, else the rule's, else the pack's; "disabled" skips the rule,
 *   "remediate" reports as "mandatory";
 * - `getConfig()` returns the rule's config (schema defaults filled in, as the CLI does) without the level;
 * - `notApplicable()` ends that rule for that resource; a rule that applied to nothing in the stack is
 *   reported not applicable, with its reasons, instead of passing silently.
 */

/** One resource registration as the mocks record it (see `policies/stackSimulator.ts`). */
export interface ResourceRecord {
  type: string;
  name: string;
  urn: string;
  inputs: Record<string, unknown>;
  /** URN of the parent resource. */
  parent?: string;
  /** Provider reference, `<provider urn>::<provider id>`. */
  provider?: string;
  /** The physical id the mocks returned, when recorded. */
  id?: string;
  /** Outputs the mocks computed (not echoes of inputs), when recorded; stack rules see them under the inputs. */
  outputs?: Record<string, unknown>;
}

/** One violation, with what `pulumi preview` prints for it. */
export interface Violation {
  policyName: string;
  description: string;
  enforcementLevel: EnforcementLevel;
  severity?: Severity;
  message: string;
  /** The resource in violation; absent when a stack rule blames the stack as a whole. */
  urn?: string;
}

/** A rule that applied to no resource of the stack, and why. */
export interface NotApplicable {
  policyName: string;
  reasons: string[];
}

/** What one run of the pack over one stack found. */
export interface PolicyReport {
  violations: Violation[];
  notApplicable: NotApplicable[];
  /** Rules that ran and applied to at least one resource. */
  applied: string[];
  /** Rules skipped because their level is "disabled". */
  disabled: string[];
}

/** Options of one evaluation. */
export interface EvaluateOptions {
  /** PolicyPack config, as given to `--policy-pack-config`. Defaults to none. */
  config?: PolicyPackConfig;
  /** The pack's default level for rules that declare none. Defaults to "advisory", as `PolicyPack` does. */
  packEnforcementLevel?: EnforcementLevel;
  /** Stack tags. Defaults to none. */
  stackTags?: ReadonlyMap<string, string>;
}

class NotApplicableSignal extends Error {
  constructor(readonly reason: string) {
    super(reason);
  }
}

function throwNotApplicable(reason?: string): never {
  throw new NotApplicableSignal(reason ?? "Policy does not apply");
}

/** Runs every rule of `policies` over `records` and collects violations and not-applicable rules. */
export async function evaluatePolicies(
  policies: Policies,
  records: ResourceRecord[],
  options: EvaluateOptions = {},
): Promise<PolicyReport> {
  const report: PolicyReport = { violations: [], notApplicable: [], applied: [], disabled: [] };
  const context = { records, stackTags: options.stackTags ?? new Map<string, string>(), report };
  for (const policy of policies) {
    const settings = settingsOf(options.config, policy.name);
    const level = levelOf(
      settings.enforcementLevel ?? policy.enforcementLevel ?? options.packEnforcementLevel ?? "advisory",
    );
    if (level === "disabled") {
      report.disabled.push(policy.name);
      continue;
    }
    const config = { ...defaultsOf(policy.configSchema), ...settings.properties };
    const reasons = isStackPolicy(policy)
      ? await runStackPolicy(policy, level, config, context)
      : await runResourcePolicy(policy, level, config, context);
    if (reasons === undefined) report.applied.push(policy.name);
    else report.notApplicable.push({ policyName: policy.name, reasons });
  }
  return report;
}

/** True when any violation would block `pulumi up`. */
export function hasMandatoryViolations(report: PolicyReport): boolean {
  return report.violations.some((v) => v.enforcementLevel === "mandatory");
}

interface Context {
  records: ResourceRecord[];
  stackTags: ReadonlyMap<string, string>;
  report: PolicyReport;
}

type Config = Record<string, unknown>;

/** Runs a resource rule over every record; returns the reasons when it applied to none. */
async function runResourcePolicy(
  policy: ResourceValidationPolicy,
  level: EnforcementLevel,
  config: Config,
  context: Context,
): Promise<string[] | undefined> {
  const validations: ResourceValidation[] = [policy.validateResource ?? []].flat();
  const reasons = new Set<string>();
  let applied = false;
  for (const record of context.records) {
    const report = reporter(policy, level, context.report, record.urn);
    for (const validation of validations) {
      try {
        await validation(resourceArgs(record, config, context), report);
        applied = true;
      } catch (error) {
        if (!(error instanceof NotApplicableSignal)) throw ruleFailure(policy, record.urn, error);
        reasons.add(error.reason);
      }
    }
  }
  return applied ? undefined : [...reasons];
}

/** Runs a stack rule once over all records; returns the reason when it does not apply. */
async function runStackPolicy(
  policy: StackValidationPolicy,
  level: EnforcementLevel,
  config: Config,
  context: Context,
): Promise<string[] | undefined> {
  const args: StackValidationArgs = {
    resources: policyResources(context.records),
    stackTags: context.stackTags,
    getConfig: <T extends object>() => config as T,
    notApplicable: throwNotApplicable,
  };
  try {
    await policy.validateStack(args, reporter(policy, level, context.report));
    return undefined;
  } catch (error) {
    if (!(error instanceof NotApplicableSignal)) throw ruleFailure(policy, "the stack", error);
    return [error.reason];
  }
}

function reporter(
  policy: ResourceValidationPolicy | StackValidationPolicy,
  level: EnforcementLevel,
  report: PolicyReport,
  resourceUrn?: string,
): ReportViolation {
  // As in the engine, a resource rule always blames the resource it validates; a stack rule names one.
  return (message: string, urn?: string) =>
    report.violations.push({
      policyName: policy.name,
      description: policy.description,
      enforcementLevel: level,
      severity: policy.severity,
      message,
      urn: resourceUrn ?? urn,
    });
}

function resourceArgs(record: ResourceRecord, config: Config, context: Context): ResourceValidationArgs {
  const props = record.inputs;
  const provider = providerOf(record, context.records);
  return {
    type: record.type,
    props,
    urn: record.urn,
    name: record.name,
    opts: optionsOf(record),
    ...(provider ? { provider } : {}),
    stackTags: context.stackTags,
    isType: (resourceClass) => isTypeOf(record.type, resourceClass),
    // The engine hands back the props unchanged when the type matches; the cast restates that.
    asType: (resourceClass) => (isTypeOf(record.type, resourceClass) ? (props as never) : undefined),
    getConfig: <T extends object>() => config as T,
    notApplicable: throwNotApplicable,
  };
}

/**
 * The stack's resources as stack rules see them. The engine passes outputs, which echo the inputs and
 * add what the provider computed; here that is the recorded outputs (what the mocks computed, and the
 * id) under the inputs, so a changed input always wins. The mocks record no dependencies, so rules
 * pair by value.
 */
function policyResources(records: ResourceRecord[]): PolicyResource[] {
  const resources = records.map((record): PolicyResource => {
    const props = {
      ...(record.outputs ?? {}),
      ...(record.id !== undefined ? { id: record.id } : {}),
      ...record.inputs,
    };
    return {
      type: record.type,
      props,
      urn: record.urn,
      name: record.name,
      opts: optionsOf(record),
      dependencies: [],
      propertyDependencies: {},
      isType: (resourceClass) => isTypeOf(record.type, resourceClass),
      // As in the engine: the resolved props stand for the resolved resource.
      asType: (resourceClass) => (isTypeOf(record.type, resourceClass) ? (props as never) : undefined),
    };
  });
  const byUrn = new Map(resources.map((r) => [r.urn, r]));
  records.forEach((record, i) => {
    const parent = record.parent ? byUrn.get(record.parent) : undefined;
    if (parent) resources[i].parent = parent;
    const provider = providerOf(record, records);
    if (provider) resources[i].provider = provider;
  });
  return resources;
}

function providerOf(record: ResourceRecord, records: ResourceRecord[]): PolicyProviderResource | undefined {
  if (!record.provider) return undefined;
  const urn = record.provider.split("::").slice(0, -1).join("::") || record.provider;
  const provider = records.find((r) => r.urn === urn);
  return provider
    ? { type: provider.type, props: provider.inputs, urn: provider.urn, name: provider.name }
    : undefined;
}

function optionsOf(record: ResourceRecord): PolicyResourceOptions {
  return {
    protect: false,
    ignoreChanges: [],
    aliases: [],
    customTimeouts: { createSeconds: 0, updateSeconds: 0, deleteSeconds: 0 },
    additionalSecretOutputs: [],
    ...(record.parent ? { parent: record.parent } : {}),
  };
}

/** Same test as the engine: the class's `__pulumiType`, else its `isInstance`. */
function isTypeOf(type: string, resourceClass: unknown): boolean {
  const token = (resourceClass as { __pulumiType?: unknown }).__pulumiType;
  if (typeof token === "string" && token.length > 0) return type === token;
  const isInstance = (resourceClass as { isInstance?: unknown }).isInstance;
  return typeof isInstance === "function" && isInstance({ __pulumiType: type }) === true;
}

function isStackPolicy(
  policy: ResourceValidationPolicy | StackValidationPolicy,
): policy is StackValidationPolicy {
  return typeof (policy as StackValidationPolicy).validateStack === "function";
}

/** A config entry is a level or an object of settings with an optional level, as in `PolicyPackConfig`. */
function settingsOf(config: PolicyPackConfig | undefined, name: string) {
  const entry = config?.[name];
  if (entry === undefined) return { properties: {} };
  if (typeof entry === "string") return { enforcementLevel: entry, properties: {} };
  const { enforcementLevel, ...properties } = entry;
  return { enforcementLevel, properties };
}

function levelOf(level: EnforcementLevel): EnforcementLevel {
  return level === "remediate" ? "mandatory" : level;
}

function defaultsOf(schema: PolicyConfigSchema | undefined): Config {
  const defaults: Config = {};
  for (const [key, property] of Object.entries(schema?.properties ?? {})) {
    const value = (property as { default?: unknown }).default;
    if (value !== undefined) defaults[key] = value;
  }
  return defaults;
}

function ruleFailure(policy: { name: string }, where: string, error: unknown): Error {
  const message = error instanceof Error ? error.message : String(error);
  return new Error(
    `policy '${policy.name}' failed while validating ${where}: ${message}. This is a bug in the rule; fix it in policies/rules/.`,
    {
      cause: error,
    },
  );
}
