#!/usr/bin/env node
// The `arpo` command of the package: runs the built CLI (dist/cli/main.js) when it exists, otherwise
// the TypeScript source through tsx (a checkout without a build). Node >= 24 is required; in a
// checkout, scripts/node24 provides one when the machine's node is older.
import { spawn } from "node:child_process"
import { existsSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"

const self = fileURLToPath(import.meta.url)
const root = join(dirname(self), "..")
const built = join(root, "dist", "cli", "main.js")
const node24 = join(root, "scripts", "node24")
const major = Number(process.versions.node.split(".")[0])

/** Run a child with our stdio; Ctrl-C reaches it directly (same process group), so we only wait for it
 *  to finish its clean-up and exit with its status; a SIGTERM sent to this process alone is passed on. */
const delegate = (command, args, env = process.env) => {
  process.on("SIGINT", () => {})
  const child = spawn(command, args, { stdio: "inherit", env })
  process.on("SIGTERM", () => child.kill("SIGTERM"))
  child.on("error", (e) => {
    console.error(`arpo: could not start ${command} (${e.message}); run \`npm run build\` or install the dev dependencies`)
    process.exit(1)
  })
  child.on("exit", (code, signal) => process.exit(code ?? (signal === "SIGINT" ? 130 : signal === "SIGTERM" ? 143 : 1)))
}

if (major < 24 && existsSync(node24) && process.env.ARPO_REEXEC !== "1") {
  delegate(node24, ["node", self, ...process.argv.slice(2)], { ...process.env, ARPO_REEXEC: "1" })
} else if (existsSync(built)) {
  await import(pathToFileURL(built).href)
} else {
  // resolve tsx from this package, not from the caller's working directory
  let tsx = "tsx"
  try {
    tsx = import.meta.resolve("tsx")
  } catch {
    // left as "tsx": node then reports that it cannot find it
  }
  // "development": `import … from "arpo"` in an experiment file resolves to this checkout's sources
  delegate(process.execPath, ["--conditions=development", "--import", tsx, join(root, "src", "cli", "main.ts"), ...process.argv.slice(2)])
}
