import js from "@eslint/js";
import globals from "globals";
import tseslint from "typescript-eslint";

/**
 * Imports run one way (DESIGN §2): each command folder of hostscripts/ uses `common/` (and verify uses
 * restore); nothing imports a command sideways or reaches into the CLI; components use only contracts;
 * nothing shipped imports tests/.
 */
const COMMANDS = ["backup", "restore", "verify", "binlog", "status", "check"];
const command = (names) => `^(\\.\\./)+(${names.join("|")})(/|$)`;
const restrict = (files, patterns) => ({
  files,
  rules: { "no-restricted-imports": ["error", { patterns }] },
});
const noCli = { regex: "^(\\.\\./)+cli$", message: "only the CLI dispatches to commands" };
const noTests = { regex: "(^|/)tests(/|$)", message: "shipped code never imports tests/" };
const onlyCommon = (self, also = []) =>
  restrict(
    [`hostscripts/${self}/**/*.ts`],
    [
      {
        regex: command(COMMANDS.filter((c) => c !== self && !also.includes(c))),
        message: `hostscripts/${self} may import only common/${also.map((a) => ` and ${a}/`).join("")}: move what both sides need to common/ or contracts/`,
      },
      noCli,
      noTests,
    ],
  );

export default tseslint.config(
  { ignores: ["node_modules/", "dist/", ".lab/", "coverage/", "bin/"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { ...globals.node, ...globals.jest } },
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/no-explicit-any": "error",
      "no-console": "off",
      eqeqeq: ["error", "always"],
    },
  },
  restrict(
    ["hostscripts/common/**/*.ts"],
    [
      { regex: command(COMMANDS), message: "common/ is used by the commands and imports none of them" },
      noCli,
      noTests,
    ],
  ),
  ...COMMANDS.filter((c) => c !== "verify").map((c) => onlyCommon(c)),
  onlyCommon("verify", ["restore"]),
  restrict(
    ["components/**/*.ts"],
    [
      {
        regex: "^(\\.\\./)+(hostscripts|policies|tests|lab|bench|scripts|index)(/|$)",
        message:
          "components/ import only contracts/: what host scripts and infrastructure share is a contract",
      },
    ],
  ),
  restrict(
    ["contracts/**/*.ts"],
    [{ regex: "^\\.\\./", message: "contracts/ stand alone: both sides import them, they import neither" }],
  ),
  restrict(["policies/**/*.ts", "lab/**/*.ts", "bench/**/*.ts", "scripts/**/*.ts"], [noTests]),
);
