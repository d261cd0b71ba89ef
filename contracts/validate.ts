import Ajv, { type ErrorObject, type ValidateFunction } from "ajv";
import addFormats from "ajv-formats";

/** One ajv instance for every contract, so formats and options never differ between the two sides. */
export const ajv = new Ajv({
  allErrors: true,
  strict: true,
  strictRequired: false,
  allowUnionTypes: true,
  discriminator: true,
});
addFormats(ajv);

/** Raised when a document does not match its contract; `problems` name each key and what it expected. */
export class ContractError extends Error {
  constructor(
    readonly document: string,
    readonly problems: string[],
  ) {
    super(`${document} is invalid:\n  - ${problems.join("\n  - ")}`);
    this.name = "ContractError";
  }
}

/** Turns ajv's errors into lines a person can act on: the dotted key, then what it must be. */
export function describeErrors(errors: ErrorObject[] | null | undefined): string[] {
  return (errors ?? []).map((e) => {
    const key = e.instancePath.replace(/^\//, "").replace(/\//g, ".") || "(top level)";
    switch (e.keyword) {
      case "required":
        return `${key === "(top level)" ? "" : key + "."}${e.params.missingProperty} is required`;
      case "additionalProperties":
        return `${key}: unknown key "${e.params.additionalProperty}" (remove it or check its spelling)`;
      case "enum":
        return `${key} must be one of ${(e.params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(", ")}`;
      case "pattern":
        return e.params.pattern === "^/" ? `${key} must be an absolute path` : `${key} ${e.message}`;
      case "const":
        return `${key} must be ${JSON.stringify(e.params.allowedValue)}`;
      default:
        return `${key} ${e.message ?? "is invalid"}`;
    }
  });
}

/** Compiles `schema` once and returns a parser that throws a ContractError naming every bad key. */
export function parser<T>(document: string, schema: object): (value: unknown) => T {
  const validate: ValidateFunction = ajv.compile(schema);
  return (value: unknown): T => {
    if (!validate(value)) throw new ContractError(document, describeErrors(validate.errors));
    return value as T;
  };
}
