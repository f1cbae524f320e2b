"""workers/trainer.py with `init {hfModel}`, driven as a real child process over its stdio protocol: the fixtures'
golden log-probs through the `logprobs` op, training (PPO and SFT steps), checkpoints that resume exactly, LoRA
(new and from peft's files, the qwen2-tiny-lora golden, only the adapter trains, peft's layout on save), exports
(hf in the input's dtype with the tokenizer files, hf-lora, merged LoRA) that load back, batches sent as a file,
and typed refusals. Needs torch only."""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "workers"))
import hf_model as H  # noqa: E402

FIXTURES = os.path.abspath(os.environ.get("ARPO_HF_FIXTURES", os.path.join(ROOT, "..", "shared", "data", "hf-fixtures")))
SCRIPT = os.path.join(ROOT, "workers", "trainer.py")
PY = sys.executable


def golden(name):
    with open(os.path.join(FIXTURES, name, "golden.json")) as f:
        return json.load(f)


class Worker:
    """One worker process; `call(op, **fields)` returns the reply (raises on ok: false unless expect_error)."""

    def __init__(self):
        self.p = subprocess.Popen([PY, SCRIPT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  text=True)
        self.n = 0

    def call(self, op, expect_error=False, **fields):
        self.n += 1
        self.p.stdin.write(json.dumps({"id": self.n, "op": op, **fields}) + "\n")
        self.p.stdin.flush()
        r = json.loads(self.p.stdout.readline())
        assert r["id"] == self.n, r
        if expect_error:
            assert not r["ok"], r
            return r["error"]
        assert r["ok"], r
        return r

    def close(self):
        try:
            self.call("shutdown")
        except Exception:
            pass
        self.p.wait(timeout=10)
        self.p.stdin.close()
        self.p.stdout.close()


def ppo_batch(seqs, start=4):
    """Sequences with a response from `start`, advantages ±1, old log-probs 0 (so the ratio is exp(logp))."""
    out = []
    for i, toks in enumerate(seqs):
        n = len(toks)
        mask = [0] * start + [1] * (n - start)
        out.append({"tokens": toks, "responseStart": start, "lossMask": mask,
                    "advantages": [(1.0 if i % 2 == 0 else -1.0) * m for m in mask],
                    "oldLogprobs": [0.0] * n, "weight": 1.0})
    return out


def max_diff(a, b):
    return max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb))


class HfWorker(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="arpo-hf-worker-")
        self.workers = []

    def tearDown(self):
        for w in self.workers:
            w.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def worker(self, **init):
        w = Worker()
        self.workers.append(w)
        info = w.call("init", device="cpu", seed=1, **init) if init else None
        return w, info

    def test_goldens_through_the_protocol(self):
        w, _ = self.worker()
        for name in ("qwen2-tiny", "llama-tiny", "qwen3-tiny"):
            g = golden(name)
            info = w.call("init", hfModel=os.path.join(FIXTURES, name), device="cpu")  # a second init replaces the model
            self.assertEqual(info["architecture"], g["class"])
            self.assertEqual(info["device"], "cpu")
            self.assertEqual(info["dtype"], "float32")
            self.assertEqual(info["trainableParams"], info["params"])
            r = w.call("logprobs", sequences=[s["tokens"] for s in g["sequences"]], microBatchRows=2)
            self.assertLess(max_diff(r["logprobs"], [s["logprobs"] for s in g["sequences"]]), 1e-4)
            self.assertLess(max_diff(r["entropies"], [s["entropies"] for s in g["sequences"]]), 1e-4)

    def test_training_save_resume_export(self):
        g = golden("qwen2-tiny")
        seqs = [s["tokens"] for s in g["sequences"]]
        adam = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weightDecay": 0.01, "maxGradNorm": 1.0}
        w, _ = self.worker(hfModel=os.path.join(FIXTURES, "qwen2-tiny"), adam=adam)
        batch = ppo_batch(seqs)
        first = w.call("train_step", sequences=batch, microBatchRows=2)
        self.assertGreater(first["tokens"], 0)
        self.assertEqual(first["step"], 1)
        ck = os.path.join(self.tmp, "ck")
        w.call("save", path=ck, policyVersion=1)
        self.assertTrue(os.path.exists(os.path.join(ck, "optimizer.safetensors")))
        a = w.call("train_step", sequences=batch, microBatchRows=2)
        # a second worker resumes from the checkpoint and takes the same step
        w2, _ = self.worker(hfModel=os.path.join(FIXTURES, "qwen2-tiny"), adam=adam)
        r = w2.call("load", path=ck)
        self.assertEqual((r["policyVersion"], r["step"]), (1, 1))
        b = w2.call("train_step", sequences=batch, microBatchRows=4)
        self.assertAlmostEqual(a["loss"], b["loss"], delta=1e-6)
        self.assertAlmostEqual(a["gradNorm"], b["gradNorm"], delta=1e-5 * a["gradNorm"])
        # SFT lowers the NLL of its tokens
        sft = [{"tokens": s, "lossMask": [0] + [1] * (len(s) - 1)} for s in seqs[:2]]
        l0 = w.call("sft_step", sequences=sft)["loss"]
        for _ in range(3):
            l1 = w.call("sft_step", sequences=sft)["loss"]
        self.assertLess(l1, l0)
        # export hf: same names and dtype as the input, tokenizer files, loads back with the same log-probs
        out = os.path.join(self.tmp, "export")
        e = w.call("export", path=out, format="hf", policyVersion=7)
        for f in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
            self.assertIn(f, e["files"])
        h0, _, _, _ = H.read_safetensors_header(os.path.join(FIXTURES, "qwen2-tiny", "model.safetensors"))
        h1, _, _, _ = H.read_safetensors_header(os.path.join(out, "model.safetensors"))
        self.assertEqual({k: (v["dtype"], v["shape"]) for k, v in h0.items()},
                         {k: (v["dtype"], v["shape"]) for k, v in h1.items()})
        w2.call("init", hfModel=out, device="cpu")
        self.assertLess(max_diff(w.call("logprobs", sequences=seqs)["logprobs"],
                                 w2.call("logprobs", sequences=seqs)["logprobs"]), 1e-5)

    def test_bfloat16_checkpoint_exports_bfloat16(self):
        m, ck = H.load_pretrained(os.path.join(FIXTURES, "llama-tiny"))
        src = os.path.join(self.tmp, "bf16")
        H.save_pretrained(m, src, source=ck, dtype=torch.bfloat16)
        w, info = self.worker(hfModel=src)
        self.assertEqual(info["sourceDtypes"], ["BF16"])
        out = os.path.join(self.tmp, "bf16-out")
        w.call("export", path=out, format="hf")
        h, _, _, _ = H.read_safetensors_header(os.path.join(out, "model.safetensors"))
        self.assertEqual({v["dtype"] for v in h.values()}, {"BF16"})

    def test_lora(self):
        g = golden("qwen2-tiny-lora")
        seqs = [s["tokens"] for s in g["sequences"]]
        base = os.path.join(FIXTURES, "qwen2-tiny")
        base_lp = [s["logprobs"] for s in golden("qwen2-tiny")["sequences"]]  # the same sequences without the adapter
        # the peft adapter from disk reproduces peft's log-probs
        a, info = self.worker(hfModel=base, loraAdapter=os.path.join(FIXTURES, "qwen2-tiny-lora"))
        lp = a.call("logprobs", sequences=seqs)["logprobs"]
        self.assertLess(max_diff(lp, [s["logprobs"] for s in g["sequences"]]), 1e-4)
        # r 4 on q, k, v, o, up of 2 layers: r·(in + out) each
        self.assertEqual(info["trainableParams"], 2 * 4 * ((64 + 64) * 2 + (64 + 32) * 2 + (64 + 160)))
        # merged into the base on export: a plain HF checkpoint with the same log-probs
        merged = os.path.join(self.tmp, "merged")
        a.call("export", path=merged, format="hf")
        b, info2 = self.worker(hfModel=merged)
        self.assertIsNone(info2["lora"])
        self.assertLess(max_diff(b.call("logprobs", sequences=seqs)["logprobs"], lp), 1e-4)
        # a new adapter: starts at the base's log-probs, trains only the adapter, saves peft's layout
        new = {"hfModel": base, "lora": {"r": 2, "alpha": 4, "targetModules": ["q_proj", "v_proj"]},
               "adam": {"lr": 1e-2, "weightDecay": 0.0}, "device": "cpu", "seed": 1}
        info3 = a.call("init", **new)
        self.assertEqual(info3["trainableParams"], 2 * 2 * ((64 + 64) + (64 + 32)))
        self.assertLess(max_diff(a.call("logprobs", sequences=seqs)["logprobs"], base_lp), 1e-4)
        for _ in range(3):
            a.call("train_step", sequences=ppo_batch(seqs))
        trained = a.call("logprobs", sequences=seqs)["logprobs"]
        self.assertGreater(max_diff(trained, base_lp), 1e-3)
        ad = os.path.join(self.tmp, "adapter")
        e = a.call("export", path=ad, format="hf-lora")
        self.assertEqual(sorted(e["files"]), ["adapter_config.json", "adapter_model.safetensors"])
        h, _, _, _ = H.read_safetensors_header(os.path.join(ad, "adapter_model.safetensors"))
        self.assertIn("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", h)
        self.assertIn("base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight", h)
        self.assertEqual(len(h), 2 * 2 * 2)
        # the saved adapter on the untouched base reproduces the trained model (so the base stayed frozen)
        b.call("init", hfModel=base, loraAdapter=ad, device="cpu")
        self.assertLess(max_diff(b.call("logprobs", sequences=seqs)["logprobs"], trained), 1e-5)
        # checkpoint (adapter + optimizer) resumes exactly
        ck = os.path.join(self.tmp, "lora-ck")
        a.call("save", path=ck, policyVersion=3)
        x = a.call("train_step", sequences=ppo_batch(seqs))
        b.call("init", **new)
        self.assertEqual(b.call("load", path=ck)["step"], 3)
        y = b.call("train_step", sequences=ppo_batch(seqs))
        self.assertAlmostEqual(x["loss"], y["loss"], delta=1e-6)

    def test_sequences_file_equals_inline(self):
        seqs = [s["tokens"] for s in golden("llama-tiny")["sequences"]]
        batch = ppo_batch(seqs)
        batch[1]["refLogprobs"] = [-1.0] * len(batch[1]["tokens"])
        batch[0]["refLogprobs"] = [-2.0] * len(batch[0]["tokens"])
        path = os.path.join(self.tmp, "batch.safetensors")
        flat = lambda k: torch.tensor([x for s in batch for x in s.get(k, [0.0] * len(s["tokens"]))], dtype=torch.float32)
        H.write_safetensors(path, [("tokens", flat("tokens")),
                                   ("lengths", torch.tensor([len(s["tokens"]) for s in batch], dtype=torch.float32)),
                                   ("responseStart", torch.tensor([4.0] * len(batch))),
                                   ("weight", torch.ones(len(batch))),
                                   ("hasRef", torch.tensor([1.0, 1.0, 0.0, 0.0])),
                                   ("lossMask", flat("lossMask")), ("advantages", flat("advantages")),
                                   ("oldLogprobs", flat("oldLogprobs")), ("refLogprobs", flat("refLogprobs"))])
        loss = {"klCoef": 0.0, "klEstimator": "k3"}  # kl is still reported over the rows with refLogprobs
        w, _ = self.worker(hfModel=os.path.join(FIXTURES, "llama-tiny"))
        a = w.call("loss", sequences=batch, loss=loss)
        b = w.call("loss", sequencesFile=path, loss=loss)
        self.assertEqual(a["loss"], b["loss"])
        self.assertEqual(a["kl"], b["kl"])
        self.assertNotEqual(a["kl"], 0.0)
        self.assertEqual(a["tokenGrads"], b["tokenGrads"])

    def test_refusals_name_file_and_field(self):
        d = os.path.join(self.tmp, "mistral")
        shutil.copytree(os.path.join(FIXTURES, "llama-tiny"), d)
        os.chmod(d, 0o755)
        cfg = os.path.join(d, "config.json")
        os.chmod(cfg, 0o644)
        with open(cfg) as f:
            raw = json.load(f)
        raw["architectures"] = ["MixtralForCausalLM"]
        with open(cfg, "w") as f:
            json.dump(raw, f)
        w, _ = self.worker()
        err = w.call("init", expect_error=True, hfModel=d, device="cpu")
        self.assertEqual(err["kind"], "protocol")
        self.assertIn("MixtralForCausalLM", err["message"])
        self.assertIn(cfg, err["message"])
        err = w.call("init", expect_error=True, hfModel=os.path.join(FIXTURES, "qwen2-tiny"), device="cpu",
                     lora={"r": 2, "alpha": 4, "targetModules": ["nope_proj"]})
        self.assertIn("target_modules", err["message"])
        w.call("init", hfModel=os.path.join(FIXTURES, "qwen2-tiny"), device="cpu")  # still serving
        err = w.call("export", expect_error=True, path=os.path.join(self.tmp, "x"), format="hf-lora")
        self.assertIn("LoRA", err["message"])
        err = w.call("logprobs", expect_error=True, sequences=[[1, 2, 550]])
        self.assertIn("550", err["message"])


if __name__ == "__main__":
    unittest.main()
