/**
 * Resolving an experiment's arms into complete, checked run configs: defaults → profile → arm → `--set` →
 * one arm per `--sweep` combination, with the component sections (`rollout`, `task`, `engine`, `trainer`,
 * `advantage.estimator`, `tools.tags.<tag>`) decoded by the registered component each names. The shared
 * defaults of an experiment may carry settings for several components (ARPO's α next to AEPO's split): an arm
 * keeps the ones its component has. A key set on an arm must exist in that arm's component; a `--set` key
 * must exist in the component of at least one arm (else ConfigInvalid listing each component's keys). Also
 * the Components (how each service is built) of a resolved config, from the registries. It runs nothing.
 */
import { Effect, Layer } from "effect"
import type { Engine } from "../engine/Engine.ts"
import type { Events } from "../events/Events.ts"
import { applySet, ConfigInvalid, type ConfigPatch, decodeConfig, mergePatch, type RunConfig, type RunConfigJson } from "../run/config.ts"
import type { AdvantageEstimator } from "../run/estimator.ts"
import type { Sampler } from "../rollout/Sampler.ts"
import type { TaskDefinition } from "../tasks/Task.ts"
import { callFormatOf } from "../tools/callFormat.ts"
import type { Tool } from "../tools/Tool.ts"
import { Toolbox } from "../tools/Toolbox.ts"
import type { InitialWeights, Trainer } from "../trainer/Trainer.ts"
import { decodeSection, find, type Kind, keysOf, type Registries, sectionPaths, settingsOf } from "./registries.ts"

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)

/** A component section of a config: its kind, its dotted key and its path. */
interface SectionRef {
  readonly kind: Kind
  readonly key: string
  readonly path: ReadonlyArray<string>
}

/** The component sections of a config JSON (every tag under `tools.tags` is one). */
const sectionsOf = (json: unknown): ReadonlyArray<SectionRef> => {
  const fixed = (Object.entries(sectionPaths) as Array<[Exclude<Kind, "tool">, ReadonlyArray<string>]>).map(([kind, path]) => ({ kind, key: path.join("."), path }))
  const tags = isRecord(json) && isRecord(json["tools"]) && isRecord(json["tools"]["tags"]) ? Object.keys(json["tools"]["tags"]) : []
  return [...fixed, ...tags.map((tag) => ({ kind: "tool" as const, key: `tools.tags.${tag}`, path: ["tools", "tags", tag] }))]
}

const getPath = (json: unknown, path: ReadonlyArray<string>): unknown => path.reduce<unknown>((at, p) => (isRecord(at) ? at[p] : undefined), json)
const setPath = <A>(json: A, path: ReadonlyArray<string>, value: unknown): A => {
  let patch: unknown = value
  for (const part of [...path].reverse()) patch = { [part]: patch }
  return replaceMerge(json, patch, path.length)
}
/** mergePatch, except that the object at `depth` is replaced rather than merged. */
const replaceMerge = <A>(base: A, patch: unknown, depth: number): A => {
  if (depth === 0 || !isRecord(base) || !isRecord(patch)) return patch as A
  const out: Record<string, unknown> = { ...base }
  for (const [k, v] of Object.entries(patch)) out[k] = replaceMerge(out[k], v, depth - 1)
  return out as A
}

/** The section a dotted key belongs to, and the key inside it ("" for the section itself). */
const sectionOfKey = (json: unknown, key: string): { readonly section: SectionRef; readonly inner: string } | undefined => {
  const tagged = /^tools\.tags\.([^.]+)(?:\.(.*))?$/.exec(key)
  if (tagged !== null) return { section: { kind: "tool", key: `tools.tags.${tagged[1]}`, path: ["tools", "tags", tagged[1]!] }, inner: tagged[2] ?? "" }
  for (const s of sectionsOf(json)) {
    if (key === s.key) return { section: s, inner: "" }
    if (key.startsWith(`${s.key}.`)) return { section: s, inner: key.slice(s.key.length + 1) }
  }
  return undefined
}

/**
 * Keep, in every component section, only the settings its named component has, then fill its defaults
 * (the registered component's Schema). Keys listed in `strict` must exist (an arm's own settings).
 */
const normalize = (registries: Registries, json: RunConfigJson, where: string, strict: ReadonlyArray<string>): Effect.Effect<RunConfigJson, ConfigInvalid> =>
  Effect.gen(function*() {
    let out = json
    for (const s of sectionsOf(json)) {
      const section = getPath(json, s.path)
      if (!isRecord(section)) continue
      const e = yield* find(registries, s.kind, section["name"], s.key)
      const known = new Set(keysOf(e))
      for (const k of strict) {
        const at = sectionOfKey(json, k)
        if (at !== undefined && at.section.key === s.key && at.inner !== "" && at.inner !== "name" && !known.has(at.inner.split(".")[0]!)) {
          return yield* new ConfigInvalid({
            key: k,
            message: `${where}: ${s.key} ${e.name} has no setting "${k}"; its keys: ${[...known].join(", ") || "(none)"}`
          })
        }
      }
      const kept = Object.fromEntries(Object.entries(section).filter(([k]) => k === "name" || known.has(k)))
      const decoded = yield* decodeSection(registries, s.kind, kept, s.key, where)
      out = setPath(out, s.path, decoded.json)
    }
    return out
  })

/** The dotted leaf keys of a patch. */
const leafKeys = (value: unknown, prefix = ""): ReadonlyArray<string> =>
  isRecord(value) ? Object.entries(value).flatMap(([k, v]) => leafKeys(v, prefix === "" ? k : `${prefix}.${k}`)) : [prefix]

/** A `--set` of a section itself (`rollout=aepo`) or of its name (`rollout.name=aepo`): the component changes. */
const namingSet = (json: unknown, key: string): ReadonlyArray<string> | undefined => {
  const at = sectionOfKey(json, key)
  return at !== undefined && (at.inner === "" || at.inner === "name") ? at.section.path : undefined
}

export interface ArmInput {
  readonly name: string
  /** the sampler's registered name (sets `rollout.name`) */
  readonly sampler?: string
  readonly set?: ConfigPatch
}

export interface Resolved {
  readonly name: string
  readonly sampler: string
  readonly config: RunConfig
  readonly json: RunConfigJson
}

/**
 * One arm's config: `base` (defaults with the profile) → the arm's patch and sampler → the `--set` values
 * (`sets`, in order). Returns the keys of `sets` this arm's components do not have (they are skipped here).
 */
export const resolveArm = (
  registries: Registries,
  base: RunConfigJson,
  arm: ArmInput,
  sets: ReadonlyArray<readonly [string, string, ("--set" | "--sweep")?]>,
  where: string
): Effect.Effect<{ readonly resolved: Resolved; readonly skipped: ReadonlyArray<string> }, ConfigInvalid> =>
  Effect.gen(function*() {
    let json = mergePatch(base, arm.set)
    if (arm.sampler !== undefined) json = setPath(json, ["rollout", "name"], arm.sampler)
    // component choices first: the other keys are checked against the chosen components
    for (const [key, raw] of sets) {
      const path = namingSet(json, key)
      if (path === undefined) continue
      const current = getPath(json, path)
      json = setPath(json, path, { ...(isRecord(current) ? current : {}), name: raw })
    }
    json = yield* normalize(registries, json, where, leafKeys(arm.set ?? {}))
    const skipped: Array<string> = []
    for (const [key, raw, flag] of sets) {
      if (namingSet(json, key) !== undefined) continue
      const at = sectionOfKey(json, key)
      if (at !== undefined && !isRecord(getPath(json, at.section.path))) {
        skipped.push(key)
        continue
      }
      if (at !== undefined && getPath(json, key.split(".")) === undefined) {
        // a setting of another arm's component
        skipped.push(key)
        continue
      }
      json = yield* applySet(json, key, raw, flag ?? "--set")
    }
    const config = yield* decodeConfig(json, where)
    // values set by --set are checked by the components' Schemas again
    yield* normalize(registries, json, where, [])
    return { resolved: { name: arm.name, sampler: String(config.rollout.name), config, json }, skipped }
  })

/** The ConfigInvalid of a `--set` key that no arm's components have: each arm's component and its keys. */
export const unknownEverywhere = (registries: Registries, key: string, arms: ReadonlyArray<Resolved>): ConfigInvalid => {
  const lists = arms.map((a) => {
    const at = sectionOfKey(a.json, key)
    if (at === undefined) return `${a.name}: unknown section`
    const section = getPath(a.json, at.section.path)
    const name = isRecord(section) ? section["name"] : undefined
    const e = (registries[at.section.kind] as ReadonlyArray<{ readonly name: string; readonly config: Parameters<typeof keysOf>[0]["config"] }>).find((x) => x.name === name)
    return `arm ${a.name}: ${at.section.key} ${String(name ?? "(none)")} has ${e === undefined ? "no such component" : keysOf(e).join(", ") || "no settings"}`
  })
  return new ConfigInvalid({ key, message: `--set ${key}: no arm's component has this setting (${[...new Set(lists)].join("; ")})` })
}

// ---------------------------------------------------------------------------------------------------------------------
// building the components of a resolved config

/** How the run builds each service from a resolved config (an experiment may replace any). */
export interface Components {
  readonly task: (config: RunConfig) => Effect.Effect<TaskDefinition, unknown>
  readonly toolbox: (config: RunConfig, task: TaskDefinition) => Layer.Layer<Toolbox, unknown, Events>
  readonly sampler: (config: RunConfig) => Layer.Layer<Sampler, unknown, Engine | Toolbox | Events>
  readonly estimator: (config: RunConfig) => Layer.Layer<AdvantageEstimator, unknown>
  /** the engine: it serves what the run's WeightSync loads (the trainer's weights before the first step and after every step) */
  readonly engine: (config: RunConfig) => Layer.Layer<Engine, unknown, Events>
  /** the trainer, starting from `initial` (the cold start's weights, or a checkpoint's) */
  readonly trainer: (config: RunConfig, initial: InitialWeights) => Layer.Layer<Trainer, unknown, Events>
}

/** The default tool of a call tag when the config names none and the task brings none. */
const defaultToolName = (tag: string): string => (tag === "python" ? "calculator" : tag)

/** Components built from the registries by the names in the config. */
export const registryComponents = (registries: Registries): Components => {
  const built = <K extends Kind>(kind: K, section: unknown, key: string) =>
    Effect.map(find(registries, kind, (section as { name?: unknown }).name, key), (e) => ({ e, settings: settingsOf(e, section) }))
  const unwrapLayer = <A, E, R>(kind: Kind, section: unknown, key: string, make: (e: any, settings: unknown) => Layer.Layer<A, E, R>) =>
    Layer.unwrap(Effect.map(built(kind, section, key), ({ e, settings }) => make(e, settings)))
  const toolFor = (config: RunConfig, task: TaskDefinition, tag: string): Effect.Effect<Tool, ConfigInvalid> =>
    Effect.gen(function*() {
      const section = config.tools.tags[tag] ?? { name: defaultToolName(tag) }
      const { e, settings } = yield* built("tool", section, `tools.tags.${tag}`)
      return e.layer(settings, { run: config, task, tag })
    })
  return {
    task: (config) => Effect.flatMap(built("task", config.task, "task"), ({ e, settings }) => e.layer(settings, { run: config })),
    toolbox: (config, task) =>
      Layer.unwrap(Effect.gen(function*() {
        const configured = task.tools.some((tag) => config.tools.tags[tag] !== undefined)
        const tools = task.toolImplementations !== undefined && !configured
          ? task.toolImplementations
          : yield* Effect.forEach(task.tools, (tag) => toolFor(config, task, tag))
        return Toolbox.layer(tools, { callLimit: config.rollout.callLimit, timeoutMs: 10_000, maxAttempts: 1, callFormat: callFormatOf(config.tools.callFormat) })
      })),
    sampler: (config) => unwrapLayer("sampler", config.rollout, "rollout", (e, s) => e.layer(s, { run: config })),
    estimator: (config) => unwrapLayer("estimator", config.advantage.estimator, "advantage.estimator", (e, s) => e.layer(s, { run: config })),
    engine: (config) => unwrapLayer("engine", config.engine, "engine", (e, s) => e.layer(s, { run: config })),
    trainer: (config, initial) => unwrapLayer("trainer", config.trainer, "trainer", (e, s) => e.layer(s, { run: config, initial }))
  }
}
