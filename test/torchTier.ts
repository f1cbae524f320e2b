/**
 * The torch tier's probe (CONVENTIONS.md: a test needing a heavy real component skips with a printed reason):
 * whether the worker interpreter imports torch, with the reason printed once when it does not.
 */
import { spawnSync } from "node:child_process"
import { workerPython } from "../src/experiment/registries.ts"

/** True when `workerPython() -c "import torch"` succeeds; otherwise prints why `label` is skipped. */
export const torchTier = (label: string): boolean => {
  const probe = spawnSync(workerPython(), ["-c", "import torch"], { encoding: "utf8", timeout: 60_000 })
  if (probe.status === 0) return true
  console.log(
    `${label} skipped: \`${workerPython()} -c "import torch"\` failed (${(probe.stderr ?? "").trim().split("\n").pop() ?? "no python"}); ` +
      "run scripts/pytorch-tier to install Debian's python3-torch"
  )
  return false
}
