#!/usr/bin/env node
// Development entry: runs the TypeScript CLI through tsx. Hosts run the esbuild bundle instead.
require("tsx/cjs");
require("../hostscripts/cli.ts")
  .main(process.argv.slice(2))
  .then((code) => process.exit(code));
