// arpo resume checks before it changes anything: a damaged checkpoint is refused with events.jsonl left
// byte for byte as it was; a config.json edited since the run started is refused without --force and
// warned about with it. A real tiny run, resumed through the CLI.
import { NodeServices } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { CliError } from "effect/cli"
import { TestConsole } from "effect/testing"
import * as fs from "node:fs"
import * as NodePath from "node:path"
import { cliWith } from "../../src/cli/app.ts"
import { Experiments, registry } from "../../src/cli/experiments.ts"
import { configHashFile, define } from "../../src/experiment/define.ts"
import { tempDir, tinySpec } from "../run/tiny.ts"

const env = Layer.mergeAll(NodeServices.layer, TestConsole.layer)
const userMessage = (e: unknown) => CliError.getUserMessage(e as object)
const tiny = define(tinySpec())
const copy = (dir: string) => {
  const to = NodePath.join(tempDir("arpo-copy-"), "tiny", NodePath.basename(dir))
  fs.cpSync(dir, to, { recursive: true })
  return to
}

describe("arpo resume checks first", () => {
  it.live("a damaged checkpoint and an edited config.json are refused before events.jsonl is touched; --force resumes with a warning", () =>
    Effect.gen(function*() {
      process.env["ARPO_CACHE_DIR"] = tempDir("arpo-cache-")
      const dir = yield* tiny.run({ profile: "quick", seeds: undefined, set: {}, sweep: {}, out: tempDir("arpo-runs-") })
      assert.isTrue(fs.existsSync(NodePath.join(dir, configHashFile)))

      // arpo's last checkpoint is step 2 (step 4's removed), and its weights are damaged: resuming would cut steps 3–4
      const damaged = copy(dir)
      const ck = (step: number) => NodePath.join(damaged, "checkpoints", `arpo.seed1.step-00000${step}`)
      fs.rmSync(ck(4), { recursive: true })
      const weights = NodePath.join(ck(2), "policy.safetensors")
      fs.writeFileSync(weights, fs.readFileSync(weights).subarray(0, 100))
      const events = fs.readFileSync(NodePath.join(damaged, "events.jsonl"))
      const e = yield* Effect.flip(cliWith(["resume", damaged]))
      assert.match(userMessage(e)!, new RegExp(`checkpoint .*arpo\\.seed1\\.step-000002 is damaged \\(policy\\.safetensors: .*\\); nothing was changed`))
      assert.isTrue(fs.readFileSync(NodePath.join(damaged, "events.jsonl")).equals(events), "events.jsonl untouched")

      // config.json edited after the start
      const edited = copy(dir)
      const configPath = NodePath.join(edited, "config.json")
      const config = JSON.parse(fs.readFileSync(configPath, "utf8"))
      config.arms[1].config.rollout.beta = 0.9
      fs.writeFileSync(configPath, JSON.stringify(config, null, 2))
      const before = fs.readFileSync(NodePath.join(edited, "events.jsonl"))
      const refused = yield* Effect.flip(cliWith(["resume", edited]))
      assert.match(userMessage(refused)!, /config\.json changed since the run started \(SHA-256 [0-9a-f]{12}…, recorded [0-9a-f]{12}… in config\.json\.sha256\).*resume with --force/)
      assert.isTrue(fs.readFileSync(NodePath.join(edited, "events.jsonl")).equals(before))
      yield* cliWith(["resume", edited, "--force"])
      const errors = (yield* TestConsole.errorLines).map(String)
      assert.isTrue(errors.some((l) => /^arpo: warning: .*config\.json changed since the run started.*--force/.test(l)), errors.join("\n"))
      const lines = (yield* TestConsole.logLines).map(String)
      assert.strictEqual(lines[lines.length - 1], edited)
    }).pipe(Effect.provideService(Experiments, registry([tiny])), Effect.provide(env)), 240_000)
})
