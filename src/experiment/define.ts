/**
 * Experiments as code: an `ExperimentSpec` is a value — a complete default RunConfig, quick/full
 * profiles (config patches and seeds), arms (a sampler, a config patch and optionally Layers each) and
 * optionally other Layers (`Components`) — and `define(spec)` turns it into the CLI's `Experiment` (run, resume,
 * evaluate). A run resolves every arm's config (defaults → profile → arm → `--set`/`--sweep`, checked by
 * Schema), writes config.json, then runs seeds × arms one after another in this process: cold start
 * (cached), the RL loop, checkpoints, and finally summary.json and report.html/.md from events.jsonl.
 */
import { Console, Effect, FileSystem, Layer, Schema } from "effect"
import * as fs from "node:fs"
import * as NodePath from "node:path"
import type { Experiment, RunOptions } from "./Experiment.ts"
import type { StampedEvent } from "../events/Event.ts"
import { emit, Events, withScope } from "../events/Events.ts"
import { decodeSafetensors, readCheckpoint } from "../model/checkpoint.ts"
import { createHash } from "node:crypto"
import { Engine } from "../engine/Engine.ts"
import { ensureBackend } from "../model/runtime.ts"
import { makeProgress } from "../io/progress.ts"
import { writeReports } from "../report/report.ts"
import { encodeTrees, treeFileName } from "../report/trees.ts"
import { formatCell, formatStat, type Summary } from "../report/summarize.ts"
import { Trainer } from "../trainer/Trainer.ts"
import { writeFileAtomic, writeJsonAtomic } from "../io/atomic.ts"
import type { RolloutTree } from "../core/tree.ts"
import {
  ConfigInvalid,
  type ConfigPatch,
  mergePatch,
  type RunConfig,
  RunConfig as RunConfigSchema,
  type RunConfigJson
} from "../run/config.ts"
import { Evaluator } from "../run/evaluate.ts"
import { builtinRegistries, type Registrations, type Registries, withRegistrations } from "./registries.ts"
import { type Components, registryComponents, resolveArm, type Resolved, unknownEverywhere } from "./resolve.ts"
import { runArm } from "../run/loop.ts"
import { WeightSync } from "../run/weightSync.ts"
import { RunStore } from "../io/RunStore.ts"
import { coldStart } from "./coldStart.ts"

export interface ArmSpec {
  /** letters, digits and . _ = + - (it names checkpoints) */
  readonly name: string
  /** the registered sampler this arm uses (sets `rollout.name`) */
  readonly sampler: string
  /** this arm's changes to the profile's config */
  readonly set?: ConfigPatch
  /** Layers replacing the experiment's `components` for this arm only (e.g. another trainer) */
  readonly components?: Partial<Components>
}

export interface Profile {
  readonly set?: ConfigPatch
  readonly seeds: ReadonlyArray<number>
}

export interface ExperimentSpec {
  readonly name: string
  readonly description: string
  /** the complete default configuration (every key a user may `--set`) */
  readonly config: RunConfigJson
  readonly profiles: { readonly quick: Profile; readonly full: Profile }
  readonly arms: ReadonlyArray<ArmSpec>
  /** components this experiment adds to the registries (by value); its arms and config name them */
  readonly register?: Registrations
  /** Layers that replace what the registries build (engine, trainer, sampler, estimator, task, toolbox) */
  readonly components?: Partial<Components>
  /** extra report lines computed from the run (printed before the run directory) */
  readonly conclude?: (summary: Summary, dir: string) => Effect.Effect<ReadonlyArray<string>, unknown, FileSystem.FileSystem>
}

/** One arm as resolved and stored in config.json. */
export interface ResolvedArm {
  readonly name: string
  /** the sampler's registered name (`config.rollout.name`) */
  readonly sampler: string
  readonly config: RunConfig
}

/** config.json of a run. */
export interface StoredRun {
  readonly experiment: string
  readonly profile: "quick" | "full"
  readonly seeds: ReadonlyArray<number>
  readonly set: Readonly<Record<string, string>>
  readonly sweep: Readonly<Record<string, ReadonlyArray<string>>>
  readonly arms: ReadonlyArray<{ readonly name: string; readonly sampler: string; readonly config: RunConfigJson }>
  /** the experiment module a run of an experiment file came from (absolute path): `arpo resume` / `eval` load it */
  readonly source?: string
  /** the components the experiment registered, by kind (names only; the file holds them) */
  readonly registered?: Readonly<Record<string, ReadonlyArray<string>>>
}

/** The run directory does not hold a run this experiment can continue. */
export class RunNotResumable extends Schema.TaggedError<RunNotResumable>()("RunNotResumable", {
  dir: Schema.String,
  message: Schema.String
}) {}

/** The registries of an experiment: the built-ins with what it registers. */
export const registriesOf = (spec: ExperimentSpec): Registries => withRegistrations(builtinRegistries, spec.register)

/**
 * Resolve the arms of a run: defaults → profile → arm → `--set` (in order) → one arm per `--sweep`
 * combination (a sweep key `arm:key`, e.g. `arpo:rollout.beta`, sweeps that arm only; a plain key every arm);
 * every component section decoded by the registered component it names (src/experiment/resolve.ts).
 */
export const resolveArms = (
  spec: ExperimentSpec,
  options: Pick<RunOptions, "profile" | "set" | "sweep">
): Effect.Effect<ReadonlyArray<ResolvedArm>, ConfigInvalid> =>
  Effect.gen(function*() {
    const registries = registriesOf(spec)
    const profile = spec.profiles[options.profile]
    const base = mergePatch(spec.config, profile.set)
    const sweeps = Object.entries(options.sweep).map(([raw, values]) => {
      const colon = raw.indexOf(":")
      return colon < 0 ? { raw, arm: undefined, key: raw, values } : { raw, arm: raw.slice(0, colon), key: raw.slice(colon + 1), values }
    })
    for (const s of sweeps) {
      if (s.arm !== undefined && !spec.arms.some((a) => a.name === s.arm)) {
        return yield* new ConfigInvalid({
          key: s.raw,
          message: `--sweep ${s.raw}=${s.values.join(",")}: experiment ${spec.name} has no arm "${s.arm}" (its arms: ${spec.arms.map((a) => a.name).join(", ")})`
        })
      }
    }
    const out: Array<Resolved> = []
    const applied = new Map<string, number>()
    for (const arm of spec.arms) {
      const combos: Array<ReadonlyArray<readonly [string, string]>> = [[]]
      for (const s of sweeps) {
        if (s.arm !== undefined && s.arm !== arm.name) continue
        const next: Array<ReadonlyArray<readonly [string, string]>> = []
        for (const c of combos) for (const v of s.values) next.push([...c, [s.key, v] as const])
        combos.splice(0, combos.length, ...next)
      }
      for (const combo of combos) {
        const name = combo.length === 0 ? arm.name : `${arm.name}+${combo.map(([k, v]) => `${k}=${v}`).join("+")}`
        const sets = [
          ...Object.entries(options.set).map(([k, v]) => [k, v, "--set"] as const),
          ...combo.map(([k, v]) => [k, v, "--sweep"] as const)
        ]
        const { resolved, skipped } = yield* resolveArm(registries, base, { ...arm, name }, sets, `experiment ${spec.name} arm ${name}`)
        for (const [key] of sets) if (!skipped.includes(key)) applied.set(key, (applied.get(key) ?? 0) + 1)
        out.push(resolved)
      }
    }
    for (const key of [...Object.keys(options.set), ...sweeps.map((s) => s.key)]) {
      if ((applied.get(key) ?? 0) === 0) return yield* unknownEverywhere(registries, key, out)
    }
    return out.map((r) => ({ name: r.name, sampler: r.sampler, config: r.config }))
  })

/**
 * The components of a resolved arm: embedded defaults → the experiment's → its spec arm's. A swept arm
 * (`name+key=v…`) has its base arm's; the name is looked up (not stored) so resumed runs get them too.
 */
export const componentsOf = (spec: ExperimentSpec, arm: string): Components => {
  const base = spec.arms.find((a) => a.name === arm) ??
    spec.arms.filter((a) => arm.startsWith(`${a.name}+`)).sort((a, b) => b.name.length - a.name.length)[0]
  return { ...registryComponents(registriesOf(spec)), ...spec.components, ...base?.components }
}

const pad = (n: number) => String(n).padStart(6, "0")
export const checkpointName = (arm: string, seed: number, step: number): string => `${arm}.seed${seed}.step-${pad(step)}`
const stateFile = "state.json"
const weightsFile = "policy.safetensors"

/** The last complete checkpoint (its state.json written) of an arm and seed: its step, or -1. */
export const lastCheckpoint = (store: RunStore["Service"], arm: string, seed: number) =>
  Effect.gen(function*() {
    const prefix = `${arm}.seed${seed}.step-`
    const names = (yield* store.listCheckpoints).filter((n) => n.startsWith(prefix) && fs.existsSync(NodePath.join(store.checkpointPath(n), stateFile)))
    const last = names[names.length - 1]
    return last === undefined ? -1 : Number(last.slice(prefix.length))
  })

const emitWall = (run: string, arm: string, seed: number, step: number, name: string, ms: number) =>
  emit({ _tag: "metric", name, value: ms }).pipe(withScope({ run, arm, seed, step }))

/** config.json's SHA-256 as the run started, kept next to it (resume compares it). */
export const configHashFile = "config.json.sha256"

const sha256 = (bytes: Uint8Array): string => createHash("sha256").update(bytes).digest("hex")

/** Record config.json's hash at the start of a run (atomically: a resume never reads half a hash). */
export const recordConfigHash = (dir: string) =>
  Effect.gen(function*() {
    const fileSystem = yield* FileSystem.FileSystem
    const bytes = yield* fileSystem.readFile(NodePath.join(dir, "config.json"))
    yield* writeFileAtomic(NodePath.join(dir, configHashFile), `${sha256(bytes)}\n`)
  })

/** Why config.json is not the one the run started with (undefined: unchanged, or a run from before hashes were kept). */
export const configChanged = (dir: string): string | undefined => {
  const hashPath = NodePath.join(dir, configHashFile)
  if (!fs.existsSync(hashPath)) return undefined
  const recorded = fs.readFileSync(hashPath, "utf8").trim()
  const now = sha256(fs.readFileSync(NodePath.join(dir, "config.json")))
  return recorded === now ? undefined : `${NodePath.join(dir, "config.json")} changed since the run started (SHA-256 ${now.slice(0, 12)}…, recorded ${recorded.slice(0, 12)}… in ${configHashFile})`
}

/** Resume's first check: config.json as the run started — refused when it changed, unless `force` (warned, hash recorded anew). */
export const requireConfigUnchanged = (dir: string, force: boolean) =>
  Effect.gen(function*() {
    const changed = configChanged(dir)
    if (changed === undefined) return
    if (!force) {
      return yield* new RunNotResumable({ dir, message: `${changed}; the run would continue under a configuration it did not start with. Restore config.json, or resume with --force to continue anyway` })
    }
    yield* Console.error(`arpo: warning: ${changed}; continuing with the edited configuration (--force)`)
    yield* recordConfigHash(dir)
  })

/** A checkpoint to resume from must be whole: state.json for this arm, seed and step, and readable weights. */
export const checkCheckpoint = (dir: string, path: string, arm: string, seed: number, step: number) =>
  Effect.gen(function*() {
    const bad = (why: string) =>
      new RunNotResumable({ dir, message: `checkpoint ${path} is damaged (${why}); nothing was changed. Delete it to resume from the checkpoint before it` })
    const state = yield* Effect.try({ try: () => JSON.parse(fs.readFileSync(NodePath.join(path, stateFile), "utf8")) as unknown, catch: (e) => bad(`${stateFile}: ${(e as Error).message}`) })
    const s = state as { arm?: unknown; seed?: unknown; step?: unknown }
    if (s.arm !== arm || s.seed !== seed || s.step !== step) return yield* bad(`${stateFile} says arm ${String(s.arm)} seed ${String(s.seed)} step ${String(s.step)}`)
    const weights = NodePath.join(path, weightsFile)
    if (fs.existsSync(weights) && fs.statSync(weights).isFile()) {
      yield* Effect.try({ try: () => decodeSafetensors(new Uint8Array(fs.readFileSync(weights))), catch: (e) => bad(`${weightsFile}: ${(e as Error).message}`) })
    }
  })

/** Run (or continue, from step `from`) one arm and seed, with the events going to the run's Events (stamped `run`). */
export const runOne = (spec: ExperimentSpec, run: string, arm: ResolvedArm, seed: number, from: number) =>
  Effect.gen(function*() {
    const store = yield* RunStore
    const fileSystem = yield* FileSystem.FileSystem
    const components = componentsOf(spec, arm.name)
    const config = arm.config
    const started = performance.now()
    const task = yield* components.task(config)
    const toolbox = components.toolbox(config, task)
    const cold = yield* coldStart({ config, seed: config.sft.seed ?? seed, task, toolbox, label: `cold-start SFT (seed ${config.sft.seed ?? seed})` })
    // the arm's wall time is its RL part: the cold start is shared (cached) and reported on its own
    const rlStarted = performance.now()
    // the trainer starts from the cold start; the engines serve what WeightSync loads (the format is
    // negotiated, and an engine that cannot load the trainer's weights fails here, when the layers are built)
    const services = WeightSync.layer.pipe(Layer.provideMerge(Layer.mergeAll(
      components.sampler(config).pipe(Layer.provideMerge(Layer.mergeAll(components.engine(config), toolbox))),
      components.trainer(config, { config: config.model, params: cold.params }),
      Evaluator.layer({ task, settings: config.eval, rollout: config.rollout, engine: components.engine(config), toolbox }),
      components.estimator(config)
    )))
    const progress = yield* makeProgress({ label: `${arm.name} seed ${seed}`, total: config.rl.steps })
    // The arm's wall times, stamped with its last step, emitted once: inside its last checkpoint, after the
    // weights and before events.jsonl is synced and state.json (the checkpoint's completion marker) written,
    // so a run killed at any point resumes to the same events as one straight through. (Emitted after the
    // RL loop instead, a kill between the last state.json and them lost them for good: resume sees the arm
    // done and skips it.) An arm without a last checkpoint (rl.steps 0) emits them after its loop.
    let wallMs: number | undefined
    const events = yield* Events
    const emitWalls = Effect.gen(function*() {
      if (wallMs !== undefined) return
      wallMs = performance.now() - rlStarted
      yield* emitWall(run, arm.name, seed, config.rl.steps, "arm.wallMs", wallMs)
      // always emitted (0 when loaded from the cache), so cached and uncached runs number their events alike
      yield* emitWall(run, arm.name, seed, config.rl.steps, "coldStart.wallMs", cold.cached ? 0 : rlStarted - started)
    }).pipe(Effect.provideService(Events, events))
    yield* Effect.gen(function*() {
      const trainer = yield* Trainer
      if (from > 0) {
        yield* trainer.load(NodePath.join(store.checkpointPath(checkpointName(arm.name, seed, from - 1)), weightsFile))
        // the checkpoint's weights to the engines; no event (a run continued equals one run straight through)
        yield* (yield* WeightSync).sync(yield* trainer.weights(), { emit: false })
      }
      const checkpoint = (step: number) =>
        Effect.gen(function*() {
          const dir = store.checkpointPath(checkpointName(arm.name, seed, step))
          yield* fileSystem.remove(dir, { recursive: true, force: true })
          yield* fileSystem.makeDirectory(dir, { recursive: true })
          yield* trainer.save(NodePath.join(dir, weightsFile))
          // the last checkpoint carries the arm's wall times: a resume skips an arm whose last checkpoint is
          // complete, so they must be on disk before its state.json (see emitWalls)
          if (step === config.rl.steps) yield* emitWalls
          yield* store.syncEvents
          // state.json is written last: a checkpoint directory without it is incomplete and ignored
          yield* writeJsonAtomic(NodePath.join(dir, stateFile), { arm: arm.name, seed, step, policyVersion: yield* trainer.policyVersion })
        }).pipe(Effect.provideService(FileSystem.FileSystem, fileSystem))
      // one sampled prompt's tree per step, compressed (trees/<arm>-seed<k>-step<n>.json.gz): arpo inspect and the report read them
      const saveTrees = (step: number, trees: ReadonlyArray<RolloutTree>) =>
        Effect.gen(function*() {
          yield* fileSystem.makeDirectory(store.paths.trees, { recursive: true })
          yield* writeFileAtomic(NodePath.join(store.paths.trees, treeFileName(arm.name, seed, step)), encodeTrees(trees))
        }).pipe(Effect.provideService(FileSystem.FileSystem, fileSystem))
      yield* runArm({
        run,
        arm: arm.name,
        seed,
        config,
        task,
        from,
        coldStart: { finalLoss: cold.finalLoss, steps: cold.steps },
        checkpoint,
        saveTrees,
        progress
      })
    }).pipe(Effect.provide(services), Effect.scoped)
    yield* emitWalls
    yield* progress.finish(`${arm.name} seed ${seed}: RL steps ${from}…${config.rl.steps} in ${((performance.now() - rlStarted) / 1000).toFixed(1)} s`)
  })

/** Seeds × arms in order (seed-major, so a partial run already compares the arms of its first seed). */
export const order = (arms: ReadonlyArray<ResolvedArm>, seeds: ReadonlyArray<number>) => seeds.flatMap((seed) => arms.map((arm) => ({ arm, seed })))

/** The lines that end a run: the headline, per-arm figures (RL wall time per seed), the cold start, where the reports are. */
export const conclusion = (
  summary: Summary,
  dir: string,
  wall: ReadonlyMap<string, number>,
  training: ReadonlyArray<TrainingCost> = []
): ReadonlyArray<string> => {
  const lines = [`Headline (${summary.headline.metric}; cost: ${summary.headline.cost}):`, `  ${summary.headline.text}`]
  for (const a of summary.headline.arms) {
    const w = wall.get(a.arm)
    lines.push(
      `  ${a.arm}: accuracy ${formatStat(a.metric)}; during RL ${formatCell(a.toolCalls)} tool calls and ${formatCell(a.tokens)} generated tokens per trajectory${w === undefined ? "" : `; ${(w / 1000).toFixed(1)} s RL wall time per seed`}`
    )
  }
  for (const t of training) {
    lines.push(
      `  ${t.arm} during RL: executed tool calls ${t.perTrajectory.toFixed(3)} per trajectory, ${t.perSolved.toFixed(2)} per solved question; training accuracy ${t.accuracy.toFixed(3)} (means over steps and seeds)`
    )
  }
  const cold = wall.get("") ?? 0
  lines.push(`Cold-start SFT: ${cold > 0 ? `${(cold / 1000).toFixed(1)} s in all` : "loaded from the cache"}`)
  lines.push(`Report: ${NodePath.join(dir, "report.md")} (and report.html, summary.json)`)
  return lines
}

/** Per arm, means over every reward.batch (steps and seeds) of the training-time tool-call figures. */
export interface TrainingCost {
  readonly arm: string
  readonly perTrajectory: number
  readonly perSolved: number
  readonly accuracy: number
}

export const trainingCost = (events: ReadonlyArray<StampedEvent>): ReadonlyArray<TrainingCost> => {
  const acc = new Map<string, { n: number; t: number; s: number; a: number }>()
  for (const { stamp, event } of events) {
    if (event._tag !== "reward.batch") continue
    const c = acc.get(stamp.arm) ?? { n: 0, t: 0, s: 0, a: 0 }
    c.n++
    c.t += event.toolCallsPerTrajectory
    c.s += event.toolCallsPerSolved
    c.a += event.accuracy
    acc.set(stamp.arm, c)
  }
  return [...acc].map(([arm, c]) => ({ arm, perTrajectory: c.t / c.n, perSolved: c.s / c.n, accuracy: c.a / c.n }))
}

const wallPerArm = (events: ReadonlyArray<{ readonly stamp: { readonly arm: string }; readonly event: { readonly _tag: string } }>) => {
  const sums = new Map<string, Array<number>>()
  for (const e of events) {
    const ev = e.event as { _tag: string; name?: string; value?: number }
    if (ev._tag === "metric" && ev.name === "arm.wallMs" && ev.value !== undefined) sums.set(e.stamp.arm, [...(sums.get(e.stamp.arm) ?? []), ev.value])
  }
  const out = new Map([...sums].map(([arm, xs]) => [arm, xs.reduce((a, b) => a + b, 0) / xs.length]))
  // total cold-start time under the key "" (no arm is named "")
  let cold = 0
  for (const e of events) {
    const ev = e.event as { _tag: string; name?: string; value?: number }
    if (ev._tag === "metric" && ev.name === "coldStart.wallMs" && ev.value !== undefined) cold += ev.value
  }
  out.set("", cold)
  return out
}

/** Run every (seed, arm) from its start step, then write the reports and print the conclusion. */
/** A path as one shell word (quoted only when it needs to be). */
const shellWord = (s: string): string => (/^[\w./:@%+=,-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`)

/** What an interrupted run (Ctrl-C, SIGTERM) prints on stderr: where it is and how to continue it. */
export const interruptedLines = (dir: string): ReadonlyArray<string> => [
  `arpo: interrupted. The run directory is ${dir}`,
  `Resume it from its last checkpoint with: arpo resume ${shellWord(dir)}`,
  `(from a clone of the repository: npm run arpo -- resume ${shellWord(dir)})`
]

const execute = (spec: ExperimentSpec, arms: ReadonlyArray<ResolvedArm>, seeds: ReadonlyArray<number>, starts: ReadonlyMap<string, number>) =>
  Effect.gen(function*() {
    const store = yield* RunStore
    const run = NodePath.basename(store.paths.dir)
    yield* Effect.gen(function*() {
      for (const { arm, seed } of order(arms, seeds)) {
        const from = starts.get(`${arm.name}/${seed}`) ?? 0
        if (from > arm.config.rl.steps) continue
        yield* runOne(spec, run, arm, seed, from)
      }
    }).pipe(Effect.onInterrupt(() => Effect.forEach(interruptedLines(store.paths.dir), (line) => Console.error(line), { discard: true })))
    return yield* finishRun(spec)
  }).pipe(Effect.provide(RunStore.eventsLayer))

/** The end of a run whose arms are done: summary.json and the reports from events.jsonl, the experiment's conclusion, the closing lines. */
export const finishRun = (spec: ExperimentSpec) =>
  Effect.gen(function*() {
    const store = yield* RunStore
    const written = yield* writeReports
    const log = yield* store.readEvents
    const extra = spec.conclude === undefined ? [] : yield* spec.conclude(written.summary, store.paths.dir)
    for (const line of [...conclusion(written.summary, store.paths.dir, wallPerArm(log.events), trainingCost(log.events)), ...extra]) yield* Console.log(line)
    return store.paths.dir
  })

/** Decode the stored arms of a run directory's config.json (component sections by the experiment's registries). */
export const readStoredRun = (
  dir: string,
  config: unknown,
  registries: Registries = builtinRegistries
): Effect.Effect<{ stored: StoredRun; arms: ReadonlyArray<ResolvedArm> }, RunNotResumable | ConfigInvalid> =>
  Effect.gen(function*() {
    const stored = config as StoredRun
    if (typeof stored !== "object" || stored === null || !Array.isArray(stored.arms) || !Array.isArray(stored.seeds)) {
      return yield* new RunNotResumable({ dir, message: `${dir}/config.json does not describe an experiment run (no arms or seeds)` })
    }
    const arms: Array<ResolvedArm> = []
    for (const a of stored.arms) {
      // the stored config is complete: resolving it again checks every section against its component
      const { resolved } = yield* resolveArm(registries, a.config, { name: a.name }, [], `${dir}/config.json arm ${a.name}`)
      arms.push({ name: a.name, sampler: resolved.sampler, config: resolved.config })
    }
    return { stored, arms }
  })

/** The names an experiment registered, by kind (what config.json records). */
const registeredNames = (r: Registrations): Record<string, ReadonlyArray<string>> =>
  Object.fromEntries(Object.entries(r).map(([kind, entries]) => [kind, (entries ?? []).map((e: { readonly name: string }) => e.name)]))

const encodeArm = (arm: ResolvedArm) => ({ name: arm.name, sampler: arm.sampler, config: Schema.encodeSync(RunConfigSchema)(arm.config) })

/**
 * What a run directory's config.json records of an experiment run: experiment, profile, seeds, the CLI's
 * `--set`/`--sweep`, every resolved arm's encoded config, the experiment file and its registrations (so
 * resume / eval / report can rebuild it). Shared by `define` and the catalog studies with their own loops.
 */
export const storedRunOf = (
  spec: ExperimentSpec,
  options: RunOptions,
  arms: ReadonlyArray<ResolvedArm>,
  seeds: ReadonlyArray<number>
): StoredRun => ({
  experiment: spec.name,
  profile: options.profile,
  seeds,
  set: options.set,
  sweep: options.sweep,
  arms: arms.map(encodeArm),
  ...(options.source !== undefined ? { source: options.source } : {}),
  ...(spec.register !== undefined ? { registered: registeredNames(spec.register) } : {})
})

/** A profile in words: its seeds and its config changes as dotted key=value pairs. */
export const profileInfo = (p: Profile): { readonly seeds: ReadonlyArray<number>; readonly changes: string } => {
  const pairs: Array<string> = []
  const walk = (v: unknown, path: string) => {
    if (typeof v === "object" && v !== null && !Array.isArray(v)) for (const [k, x] of Object.entries(v)) walk(x, path === "" ? k : `${path}.${k}`)
    else pairs.push(`${path}=${JSON.stringify(v)}`)
  }
  walk(p.set ?? {}, "")
  return { seeds: p.seeds, changes: pairs.join(" ") }
}

/** The CLI Experiment of a spec. */
export const define = (spec: ExperimentSpec): Experiment => ({
  name: spec.name,
  description: spec.description,
  profiles: { quick: profileInfo(spec.profiles.quick), full: profileInfo(spec.profiles.full) },
  run: (options) =>
    Effect.gen(function*() {
      const arms = yield* resolveArms(spec, options)
      const seeds = options.seeds ?? spec.profiles[options.profile].seeds
      const stored = storedRunOf(spec, options, arms, seeds)
      return yield* Effect.andThen(RunStore.use((store) => recordConfigHash(store.paths.dir)), execute(spec, arms, seeds, new Map())).pipe(
        Effect.provide(RunStore.layerCreate({ root: options.out, experiment: spec.name, config: stored }))
      )
    }),
  resume: (dir, resumeOptions = {}) =>
    Effect.gen(function*() {
      const store = yield* RunStore
      const { stored, arms } = yield* readStoredRun(dir, yield* store.readConfig, registriesOf(spec))
      if (stored.experiment !== spec.name) {
        return yield* new RunNotResumable({ dir, message: `${dir} is a run of ${stored.experiment}, not ${spec.name}` })
      }
      // before anything is changed: config.json as the run started, and every checkpoint to resume from readable
      yield* requireConfigUnchanged(dir, resumeOptions.force === true)
      const starts = new Map<string, number>()
      for (const { arm, seed } of order(arms, stored.seeds)) {
        const last = yield* lastCheckpoint(store, arm.name, seed)
        if (last >= 0) yield* checkCheckpoint(dir, store.checkpointPath(checkpointName(arm.name, seed, last)), arm.name, seed, last)
        starts.set(`${arm.name}/${seed}`, last + 1)
      }
      for (const { arm, seed } of order(arms, stored.seeds)) {
        const last = starts.get(`${arm.name}/${seed}`)! - 1
        // events after the checkpoint are recomputed: drop them so nothing is recorded twice
        if (last < arm.config.rl.steps) yield* store.truncateAfterStep(last, { arm: arm.name, seed })
      }
      return yield* execute(spec, arms, stored.seeds, starts)
    }).pipe(Effect.provide(RunStore.layerOpen(dir))),
  ...(spec.conclude === undefined ? {} : {
    report: (dir: string) =>
      Effect.gen(function*() {
        const fileSystem = yield* FileSystem.FileSystem
        const summary = JSON.parse(yield* fileSystem.readFileString(NodePath.join(dir, "summary.json"))) as Summary
        return yield* spec.conclude!(summary, dir)
      })
  }),
  evaluate: (checkpoint, options) =>
    Effect.gen(function*() {
      const runDir = NodePath.dirname(NodePath.dirname(NodePath.resolve(checkpoint)))
      const config = yield* RunStore.use((s) => s.readConfig).pipe(Effect.provide(RunStore.layerOpen(runDir)))
      const { arms } = yield* readStoredRun(runDir, config, registriesOf(spec))
      const state = yield* Effect.try({
        try: () => JSON.parse(fs.readFileSync(NodePath.join(checkpoint, stateFile), "utf8")) as { arm: string; seed: number; step: number },
        catch: () => new RunNotResumable({ dir: runDir, message: `checkpoint ${checkpoint} is incomplete or not a checkpoint of an experiment run (no readable ${stateFile})` })
      })
      const arm = arms.find((a) => a.name === state.arm)
      if (arm === undefined) return yield* new RunNotResumable({ dir: runDir, message: `checkpoint ${checkpoint}: arm ${state.arm} is not in ${runDir}/config.json` })
      if (options.task !== arm.config.task.name) {
        return yield* new ConfigInvalid({ key: "task", message: `--task ${options.task}: this run trained on ${arm.config.task.name}; evaluate it on that task` })
      }
      const split = options.split ?? "test"
      if (split !== "train" && split !== "test") return yield* new ConfigInvalid({ key: "split", message: `--split ${split}: use train or test` })
      const components = componentsOf(spec, arm.name)
      const task = yield* components.task(arm.config)
      yield* Effect.promise(ensureBackend)
      const ck = yield* Effect.try({
        try: () => readCheckpoint(NodePath.join(checkpoint, weightsFile)),
        catch: (e) => new RunNotResumable({ dir: runDir, message: `checkpoint ${checkpoint}: ${e instanceof Error ? e.message : String(e)}` })
      })
      // the arm's trainer holds the checkpoint's weights and WeightSync loads them into the arm's engine in
      // a format it takes (the arm's engine may be llama.cpp, which loads GGUF only); the evaluator uses that engine
      const e = yield* Effect.gen(function*() {
        const engine = yield* Engine
        return yield* Evaluator.use((ev) => ev.evaluate({ split, seed: options.seed, step: state.step })).pipe(
          Effect.provide(Evaluator.layer({
            task,
            settings: arm.config.eval,
            rollout: arm.config.rollout,
            engine: Layer.succeed(Engine, engine),
            toolbox: components.toolbox(arm.config, task)
          }))
        )
      }).pipe(
        Effect.provide(WeightSync.layer.pipe(
          Layer.provideMerge(Layer.mergeAll(
            components.engine(arm.config),
            components.trainer(arm.config, { config: arm.config.model, params: ck.params, version: ck.policyVersion })
          )),
          Layer.provide(Events.layerDiscard)
        )),
        Effect.scoped
      )
      return [
        `${spec.name} ${arm.name} seed ${state.seed} step ${state.step} on ${task.name}/${split} (${e.questions} questions):`,
        `greedy accuracy ${e.accuracyGreedy.toFixed(3)}, pass@${e.k} ${e.passAtK.toFixed(3)}, tool calls per question ${e.toolCallsPerQuestion.toFixed(2)}`
      ]
    })
})
