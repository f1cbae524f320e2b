// Tier "hf" (needs `import torch`, e.g. Debian's python3-torch; nothing is downloaded): the Python tests of the
// Hugging Face support in workers/ (test/workers/test_*.py, Python's unittest) against the transformers-made
// goldens in ../shared/data/hf-fixtures. Skips with a printed reason where torch is not importable.
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "vitest"

const python = fs.existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3"
const root = path.resolve(import.meta.dirname, "../..")
const probe = spawnSync(python, ["-c", "import torch"], { encoding: "utf8", timeout: 60_000 })
const torchOk = probe.status === 0
if (!torchOk) {
  console.log(
    `hf tier skipped: \`${python} -c "import torch"\` failed (${(probe.stderr ?? "no python").trim().split("\n").pop()}); ` +
      "run scripts/pytorch-tier to install Debian's python3-torch"
  )
}

const unittest = (file: string) => {
  const r = spawnSync(python, [path.join("test/workers", file), "-v"], {
    cwd: root,
    encoding: "utf8",
    timeout: 300_000,
    env: { ...process.env, PYTHONDONTWRITEBYTECODE: "1" }
  })
  const out = `${r.stdout}\n${r.stderr}`
  if (r.status !== 0) console.log(out)
  return { status: r.status, out }
}

describe.skipIf(!torchOk)("hf tier: Hugging Face models in the PyTorch worker", () => {
  it("workers/hf_model.py matches transformers' goldens, its KV cache matches full forwards, bad checkpoints are refused by name", () => {
    const r = unittest("test_hf_model.py")
    expect(r.out).toMatch(/Ran \d+ tests[^]*\nOK/)
    expect(r.status, r.out).toBe(0)
  }, 300_000)

  it("workers/trainer.py with init {hfModel}: goldens through the protocol, training that resumes exactly, LoRA (peft's files and golden), HF / peft exports that load back, batches as a file", () => {
    const r = unittest("test_hf_worker.py")
    expect(r.out).toMatch(/Ran \d+ tests[^]*\nOK/)
    expect(r.status, r.out).toBe(0)
  }, 600_000)

  it("scripts/gpu-check --cpu (its dry run) runs every code path and reports the fixture parity within tolerance", () => {
    const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "arpo-gpu-check-")), "gpu.json")
    const r = spawnSync(python, ["scripts/gpu-check", "--cpu", "--out", out], { cwd: root, encoding: "utf8", timeout: 300_000 })
    expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0)
    const result = JSON.parse(fs.readFileSync(out, "utf8")) as { figures: Array<{ figure: string; value: number | null }> }
    const value = (prefix: string) => result.figures.find((f) => f.figure.startsWith(prefix))?.value
    expect(value("fixtures: max |logp device - transformers golden|")).toBeLessThan(1e-4)
    expect(value("fixtures: max relative |grad norm device - golden|")).toBeLessThan(1e-3)
    expect(value("train step: tokens/s")).toBeGreaterThan(0)
    fs.rmSync(path.dirname(out), { recursive: true, force: true })
  }, 300_000)
})
