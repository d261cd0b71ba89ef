export * from "./config";
export * from "./keys";
export * from "./manifest";
export * from "./message";
export * from "./metrics";
export * from "./validate";
export * from "./verification";
export * from "./tags";
