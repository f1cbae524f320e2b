#!/usr/bin/env node
// The `arpo` command of the package: runs the built CLI (dist/cli/main.js) when it exists, otherwise
// the TypeScript source through tsx (a checkout without a build). Node >= 24 is required; in a
// checkout, scripts/node24 provides one when the machine's node is older.
import { spawnSync } from "node:child_process"
import { existsSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"

const root = join(dirname(fileURLToPath(import.meta.url)), "..")
const built = join(root, "dist", "cli", "main.js")
const major = Number(process.versions.node.split(".")[0])
const node24 = join(root, "scripts", "node24")

if (major < 24 && existsSync(node24) && process.env.ARPO_REEXEC !== "1") {
  // re-run this script under a Node >= 24 (installed on first use by scripts/node24)
  const r = spawnSync(node24, ["node", fileURLToPath(import.meta.url), ...process.argv.slice(2)], {
    stdio: "inherit",
    env: { ...process.env, ARPO_REEXEC: "1" }
  })
  process.exit(r.status ?? 1)
} else if (existsSync(built)) {
  await import(pathToFileURL(built).href)
} else {
  const source = join(root, "src", "cli", "main.ts")
  // resolve tsx from this package, not from the caller's working directory
  let tsx = "tsx"
  try {
    tsx = import.meta.resolve("tsx")
  } catch {
    // left as "tsx": the error below says what to do
  }
  // The child shares the terminal's process group, so Ctrl-C reaches it directly and its finalizers run.
  const r = spawnSync(process.execPath, ["--import", tsx, source, ...process.argv.slice(2)], { stdio: "inherit", cwd: process.cwd() })
  if (r.error) {
    console.error(`arpo: could not start ${source} with tsx (${r.error.message}); run \`npm run build\` or install dev dependencies`)
    process.exit(1)
  }
  process.exit(r.status ?? (r.signal === "SIGINT" ? 130 : 1))
}
