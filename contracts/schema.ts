/**
 * The tie between a contract's documented interface and its JSON Schema. `schemaFor<T>()(schema)`
 * compiles only when the documents the schema accepts have exactly the keys of `T` (required where `T`
 * requires them, at every depth) and every accepted value is a `T`; the parsers then return `T` without
 * a cast anyone could get wrong. Bounds, patterns and formats stay runtime checks: TypeScript cannot
 * say them, so a schema may be narrower than its type there (an `enum` of page sizes for a `number`).
 *
 * The interfaces stay the declaration people read, with a doc comment per field. ajv's own
 * `JSONSchemaType<T>` would tie them too, but it demands `nullable: true` on every optional key, so
 * every contract would start accepting `null` where it refuses it, and it cannot type a required
 * `string | null` at all. Deriving the types from the schemas instead would lose the field docs.
 */

/** The type of the documents a schema accepts, for the keywords the contracts use. */
export type SchemaType<S> = S extends { const: infer C }
  ? C
  : S extends { enum: readonly (infer E)[] }
    ? E
    : S extends { oneOf: readonly (infer B)[] }
      ? B extends unknown
        ? SchemaType<B>
        : never
      : S extends { properties: infer P }
        ? OrNull<S, ObjectType<P, RequiredKeys<S>>>
        : S extends { items: infer I }
          ? OrNull<S, SchemaType<I>[]>
          : S extends { type: infer N }
            ? Primitive<N extends readonly (infer U)[] ? U : N>
            : unknown;

type RequiredKeys<S> = S extends { required: readonly (infer K)[] } ? K : never;

type ObjectType<P, R> = Flat<
  { -readonly [K in keyof P as K extends R ? K : never]: SchemaType<P[K]> } & {
    -readonly [K in keyof P as K extends R ? never : K]?: SchemaType<P[K]>;
  }
>;

type Flat<T> = { [K in keyof T]: T[K] };

type OrNull<S, T> = S extends { type: readonly (infer N)[] } ? ("null" extends N ? T | null : T) : T;

type Primitive<N> = N extends "string"
  ? string
  : N extends "integer" | "number"
    ? number
    : N extends "boolean"
      ? boolean
      : N extends "null"
        ? null
        : unknown;

/** `T` with number literals widened and objects flattened, so two spellings of one shape are one type. */
type Shape<T> = T extends number
  ? number
  : T extends string | boolean | null | undefined
    ? T
    : T extends readonly (infer E)[]
      ? Shape<E>[]
      : { [K in keyof T]: Shape<T[K]> };

type Same<A, B> = (<G>() => G extends A ? 1 : 2) extends <G>() => G extends B ? 1 : 2 ? true : false;

type IsUnion<T, U = T> = T extends unknown ? ([U] extends [T] ? false : true) : never;

type IsRecord<T> = [T] extends [readonly unknown[]]
  ? false
  : [T] extends [object]
    ? true extends IsUnion<T>
      ? false
      : true
    : false;

type OptionalKeys<T> = { [K in keyof T]-?: undefined extends T[K] ? K : never }[keyof T];

type Field<Path extends string, K extends string> = Path extends "" ? K : `${Path}.${K}`;

/** The paths where `A` and `B` differ in keys, optionality or type; `never` when they agree. */
type Differences<A, B, Path extends string = ""> =
  Same<A, B> extends true
    ? never
    : [IsRecord<A>, IsRecord<B>] extends [true, true]
      ? FieldDifferences<A, B, Path>
      : [A, B] extends [(infer EA)[], (infer EB)[]]
        ? Differences<EA, EB, `${Path}[]`>
        : `${Path extends "" ? "(top level)" : Path} (types differ)`;

type FieldDifferences<A, B, Path extends string> =
  Extract<keyof A | keyof B, string> extends infer K
    ? K extends string
      ? FieldDifference<A, B, K, Path>
      : never
    : never;

type FieldDifference<A, B, K extends string, Path extends string> = K extends keyof A
  ? K extends keyof B
    ? (K extends OptionalKeys<A> ? true : false) extends (K extends OptionalKeys<B> ? true : false)
      ? Differences<Exclude<A[K], undefined>, Exclude<B[K], undefined>, Field<Path, K>>
      : `${Field<Path, K>} (optional on one side only)`
    : `${Field<Path, K>} (missing from the schema)`
  : `${Field<Path, K>} (missing from the type)`;

/** Where a schema and the type it documents disagree: dotted paths, or `never`. */
export type Drift<T, S> =
  | Differences<Shape<T>, Shape<SchemaType<S>>>
  | ([SchemaType<S>] extends [T] ? never : "(a value the schema accepts is not of the type)");

declare const documents: unique symbol;

/** A schema tied to the interface `T` it documents; {@link parser} returns `T`. */
export interface SchemaFor<T> {
  readonly [documents]: T;
}

/**
 * Ties `schema` to `T`; a compile error names the fields where they differ. Curried because TypeScript
 * cannot take `T` explicitly and infer the schema's literal type in the same call.
 */
export function schemaFor<T>() {
  return <const S extends object>(
    schema: S & { [Path in Drift<T, S>]: "the schema and its type differ here" },
  ): S & SchemaFor<T> => schema as S & SchemaFor<T>;
}
