"""workers/hf_model.py against the transformers-made goldens in ../shared/data/hf-fixtures (log-probs, entropies,
greedy continuations, per-tensor gradient norms) for the three architectures in both config forms, the KV cache
(incremental, left-padded, forked rows), dtypes and shards on disk, and the typed refusals. Needs torch only;
run by test/workers/hf.test.ts (or `python3 -m unittest discover -s test/workers`)."""
import copy
import json
import math
import os
import shutil
import sys
import tempfile
import unittest

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "workers"))
import hf_model as H  # noqa: E402

FIXTURES = os.path.abspath(os.environ.get("ARPO_HF_FIXTURES", os.path.join(HERE, "..", "..", "..", "shared", "data",
                                                                           "hf-fixtures")))
MODELS = ("qwen2-tiny", "llama-tiny", "qwen3-tiny")
CONFIGS = ("config.json", "config.transformers4.json")


def golden(name):
    with open(os.path.join(FIXTURES, name, "golden.json")) as f:
        return json.load(f)


def copy_fixture(name, tmp):
    d = os.path.join(tmp, name)
    shutil.copytree(os.path.join(FIXTURES, name), d)
    for f in os.listdir(d):
        os.chmod(os.path.join(d, f), 0o644)
    os.chmod(d, 0o755)
    return d


def edit_config(d, **changes):
    p = os.path.join(d, "config.json")
    with open(p) as f:
        raw = json.load(f)
    for k, v in changes.items():
        if v is None:
            raw.pop(k, None)
        else:
            raw[k] = v
    with open(p, "w") as f:
        json.dump(raw, f)


class Parity(unittest.TestCase):
    """Each fixture under each config form reproduces transformers' float32 outputs."""

    def test_goldens(self):
        for name in MODELS:
            g = golden(name)
            for cf in CONFIGS:
                with self.subTest(model=name, config=cf):
                    m, ck = H.load_pretrained(os.path.join(FIXTURES, name), config_file=cf)
                    self.assertEqual(ck.config.architecture, g["class"])
                    dl = de = 0.0
                    with torch.no_grad():
                        for s in g["sequences"]:
                            lp, en = H.token_logprobs(m, torch.tensor([s["tokens"]]))
                            dl = max(dl, (lp[0] - torch.tensor(s["logprobs"])).abs().max().item())
                            de = max(de, (en[0] - torch.tensor(s["entropies"])).abs().max().item())
                            top = torch.log_softmax(m(torch.tensor([s["tokens"]]))[0, -1], -1).topk(5)
                            self.assertEqual(top.indices.tolist(), s["lastTop5"]["ids"])
                    self.assertLess(dl, 1e-4)
                    self.assertLess(de, 1e-4)
                    self.assertEqual(H.greedy(m, g["greedy"]["prompt"], 16), g["greedy"]["continuation"])
                    x = torch.tensor([g["sequences"][g["gradCheck"]["sequence"]]["tokens"]])
                    lp, _ = H.token_logprobs(m, x)
                    nll = -lp[0, 1:].mean()
                    nll.backward()
                    self.assertAlmostEqual(nll.item(), g["gradCheck"]["value"], delta=1e-4)
                    norms = g["gradCheck"]["gradNorms"]
                    self.assertEqual(sorted(n for n, _ in m.named_parameters()), sorted(norms))
                    for n, p in m.named_parameters():
                        self.assertLess(abs(p.grad.norm().item() - norms[n]) / norms[n], 1e-3, n)
                    print(f"  {name} {cf}: max |dlogp| {dl:.1e}, max |dH| {de:.1e}")

    def test_chunked_head_equals_whole(self):
        m, _ = H.load_pretrained(os.path.join(FIXTURES, "llama-tiny"))
        x = torch.tensor([golden("llama-tiny")["sequences"][2]["tokens"]])
        a = H.token_logprobs(m, x)
        b = H.token_logprobs(m, x, chunk=7)  # recomputed chunks, with gradients
        self.assertLess((a[0] - b[0]).abs().max().item(), 1e-6)
        b[0].sum().backward()
        self.assertIsNotNone(m.model.embed_tokens.weight.grad)


try:
    import transformers  # noqa: F401
    TRANSFORMERS = None
except ImportError as e:
    TRANSFORMERS = f"transformers is not importable ({e})"
    print(f"  transformers cross-check skipped: {TRANSFORMERS}")


@unittest.skipIf(TRANSFORMERS is not None, TRANSFORMERS or "")
class AgainstTransformers(unittest.TestCase):
    """Where transformers is importable: its own logits on every fixture equal ours (float32, eager attention)."""

    def test_logits(self):
        import transformers
        for name in MODELS:
            ours, _ = H.load_pretrained(os.path.join(FIXTURES, name))
            theirs = transformers.AutoModelForCausalLM.from_pretrained(os.path.join(FIXTURES, name),
                                                                       torch_dtype=torch.float32,
                                                                       attn_implementation="eager").eval()
            with torch.no_grad():
                for s in golden(name)["sequences"]:
                    x = torch.tensor([s["tokens"]])
                    self.assertLess((ours(x) - theirs(x).logits).abs().max().item(), 1e-4, name)


class Lora(unittest.TestCase):
    """peft's adapter file (workers/hf_worker.py's own LoRA) reproduces peft's log-probs; merging changes nothing."""

    def test_adapter_golden_both_config_forms(self):
        import hf_worker as W
        g = golden("qwen2-tiny-lora")
        for cf in CONFIGS:
            m, ck = H.load_pretrained(os.path.join(FIXTURES, "qwen2-tiny"), config_file=cf)
            names = W.load_adapter(m, os.path.join(FIXTURES, "qwen2-tiny-lora"))[1]
            self.assertEqual(len(names), 2 * 5)
            d = 0.0
            with torch.no_grad():
                for s in g["sequences"]:
                    lp, _ = H.token_logprobs(m, torch.tensor([s["tokens"]]))
                    d = max(d, (lp[0] - torch.tensor(s["logprobs"])).abs().max().item())
            self.assertLess(d, 1e-4, cf)
            print(f"  qwen2-tiny-lora {cf}: max |dlogp| {d:.1e}")
        # merged W + (alpha/r)·B·A in a plain model gives the same log-probs
        state = {}
        deltas = {n + ".weight": mod.delta() for n, mod in W.lora_modules(m)}
        for n, p in m.named_parameters():
            if ".lora_" not in n:
                state[n] = p.detach() + deltas.get(n, 0)
        plain = H.HfCausalLM(ck.config)
        plain.load_state_dict(state)
        x = torch.tensor([g["sequences"][2]["tokens"]])
        with torch.no_grad():
            self.assertLess((plain(x) - m(x)).abs().max().item(), 1e-4)


class Cache(unittest.TestCase):
    """The KV cache gives the same logits as a full forward, under left padding and after forking rows."""

    def setUp(self):
        self.m, _ = H.load_pretrained(os.path.join(FIXTURES, "qwen3-tiny"))
        self.seqs = [s["tokens"] for s in golden("qwen3-tiny")["sequences"]]

    @torch.no_grad()
    def test_incremental_equals_full(self):
        ids = torch.tensor([self.seqs[0]])
        full = self.m(ids)
        cache = self.m.new_cache()
        parts = [self.m(ids[:, :10], cache=cache), self.m(ids[:, 10:13], cache=cache)]
        parts += [self.m(ids[:, t:t + 1], cache=cache) for t in range(13, ids.shape[1])]
        self.assertEqual(cache.length, ids.shape[1])
        self.assertLess((torch.cat(parts, 1) - full).abs().max().item(), 1e-4)

    @torch.no_grad()
    def test_left_padding_and_fork(self):
        a, b = self.seqs[0][:20], self.seqs[2][:12]
        T = len(a)
        ids = torch.tensor([a, [0] * (T - len(b)) + b])
        key_mask = torch.tensor([[True] * T, [False] * (T - len(b)) + [True] * len(b)])
        positions = (key_mask.long().cumsum(1) - 1).clamp_min(0)
        cache = self.m.new_cache()
        out = self.m(ids, positions=positions, key_mask=key_mask, cache=cache)
        ref_b = self.m(torch.tensor([b]))
        self.assertLess((out[1, T - len(b):] - ref_b[0]).abs().max().item(), 1e-4)
        # fork: row 1 twice and row 0 once, then one more token each
        fork = cache.select(torch.tensor([1, 1, 0]))
        nxt = torch.tensor([[5], [6], [7]])
        km = torch.cat([key_mask[[1, 1, 0]], torch.ones(3, 1, dtype=torch.bool)], 1)
        pos = torch.tensor([[len(b)], [len(b)], [T]])
        step = self.m(nxt, positions=pos, key_mask=km, cache=fork)
        self.assertEqual(fork.length, T + 1)
        self.assertEqual(cache.length, T)  # the parent is untouched
        for row, (seq, tok) in enumerate([(b, 5), (b, 6), (a, 7)]):
            ref = self.m(torch.tensor([seq + [tok]]))[0, -1]
            self.assertLess((step[row, 0] - ref).abs().max().item(), 1e-4)


class Storage(unittest.TestCase):
    """Dtypes and shards on disk, the export layout, and the typed refusals."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="arpo-hf-test-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_dtypes_and_shards_round_trip(self):
        m, ck = H.load_pretrained(os.path.join(FIXTURES, "qwen2-tiny"))
        x = torch.tensor([golden("qwen2-tiny")["sequences"][1]["tokens"]])
        with torch.no_grad():
            ref = m(x)
        for dtype, tol in ((torch.bfloat16, 0.5), (torch.float16, 0.05), (None, 0.0)):
            d = os.path.join(self.tmp, str(dtype))
            files = H.save_pretrained(m, d, source=ck, dtype=dtype, max_shard_bytes=200_000)
            self.assertIn("model.safetensors.index.json", files)
            self.assertIn("tokenizer.json", files)
            m2, ck2 = H.load_pretrained(d)
            want = "F32" if dtype is None else H.DTYPE_NAMES[dtype]
            self.assertEqual(set(ck2.dtypes.values()), {want})
            self.assertTrue(ck2.sharded)
            with torch.no_grad():
                err = (m2(x) - ref).abs().max().item()
            self.assertLessEqual(err, tol, str(dtype))
            if dtype is None:
                self.assertEqual(err, 0.0)  # float32 round trip is exact

    def test_same_names_and_dtype_as_input(self):
        m, ck = H.load_pretrained(os.path.join(FIXTURES, "llama-tiny"))
        d = os.path.join(self.tmp, "out")
        H.save_pretrained(m, d, source=ck)
        a, _, _, _ = H.read_safetensors_header(os.path.join(FIXTURES, "llama-tiny", "model.safetensors"))
        b, _, _, _ = H.read_safetensors_header(os.path.join(d, "model.safetensors"))
        self.assertEqual({k: (v["dtype"], v["shape"]) for k, v in a.items()},
                         {k: (v["dtype"], v["shape"]) for k, v in b.items()})

    def assertRefused(self, code, d, *needles, **kw):
        with self.assertRaises(H.CheckpointError) as e:
            H.load_pretrained(d, **kw)
        self.assertEqual(e.exception.code, code, e.exception.message)
        for n in needles:
            self.assertIn(n, e.exception.message)
        return e.exception

    def test_refusals(self):
        d = copy_fixture("qwen2-tiny", self.tmp)
        edit_config(d, architectures=["MistralForCausalLM"])
        self.assertRefused("unsupported-architecture", d, "MistralForCausalLM", "config.json")
        for changes, needle in (({"rope_parameters": {"rope_type": "yarn", "rope_theta": 1e6, "factor": 4.0}}, "yarn"),
                                ({"use_sliding_window": True}, "sliding"),
                                ({"layer_types": ["sliding_attention", "full_attention"]}, "sliding_attention"),
                                ({"num_experts": 8}, "num_experts"),
                                ({"hidden_act": "gelu"}, "gelu")):
            d = copy_fixture("qwen2-tiny", os.path.join(self.tmp, needle))
            edit_config(d, **changes)
            self.assertRefused("unsupported-config", d, needle, "config.json")
        d = copy_fixture("llama-tiny", os.path.join(self.tmp, "t4"))
        os.replace(os.path.join(d, "config.transformers4.json"), os.path.join(d, "config.json"))
        edit_config(d, rope_scaling={"type": "dynamic", "factor": 2.0})
        self.assertRefused("unsupported-config", d, "dynamic", "rope_scaling")

    def test_bad_files(self):
        m, ck = H.load_pretrained(os.path.join(FIXTURES, "qwen3-tiny"))
        d = os.path.join(self.tmp, "sharded")
        H.save_pretrained(m, d, source=ck, max_shard_bytes=200_000)
        shard = sorted(f for f in os.listdir(d) if f.startswith("model-"))[-1]
        os.rename(os.path.join(d, shard), os.path.join(self.tmp, shard))
        self.assertRefused("missing-shard", d, shard, "model.safetensors.index.json")
        # truncated single file
        d = copy_fixture("qwen3-tiny", os.path.join(self.tmp, "trunc"))
        p = os.path.join(d, "model.safetensors")
        with open(p, "r+b") as f:
            f.truncate(os.path.getsize(p) - 100)
        e = self.assertRefused("truncated", d, "model.safetensors", "truncated")
        self.assertEqual(e.file, p)
        with open(p, "r+b") as f:
            f.truncate(5)
        self.assertRefused("truncated", d, "model.safetensors")
        # a tensor of the wrong shape, a missing tensor
        d = copy_fixture("llama-tiny", os.path.join(self.tmp, "shape"))
        edit_config(d, intermediate_size=128)
        self.assertRefused("tensor-shape", d, "model.layers.0.mlp.gate_proj.weight", "[160, 64]", "[128, 64]")
        d = copy_fixture("llama-tiny", os.path.join(self.tmp, "untied"))
        edit_config(d, num_hidden_layers=3)
        self.assertRefused("missing-tensor", d, "model.layers.2.")
        d = copy_fixture("llama-tiny", os.path.join(self.tmp, "noconfig"))
        os.remove(os.path.join(d, "config.json"))
        self.assertRefused("missing-file", d, "config.json")


class Rope(unittest.TestCase):
    def test_llama3_scaling(self):
        with open(os.path.join(FIXTURES, "llama-tiny", "config.transformers4.json")) as f:
            raw = json.load(f)
        base = H.HfConfig(dict(raw))
        scaled = H.HfConfig(dict(raw, rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                    "high_freq_factor": 4.0, "original_max_position_embeddings": 64}))
        a, b = H.rope_inv_freq(base), H.rope_inv_freq(scaled)
        wavelen = 2 * math.pi / a
        hi = wavelen < 64 / 4.0
        lo = wavelen > 64 / 1.0
        self.assertTrue(hi.any() and lo.any())
        self.assertTrue(torch.equal(a[hi], b[hi]))  # short wavelengths untouched
        self.assertTrue(torch.allclose(a[lo] / 8.0, b[lo]))  # long ones slowed by the factor
        mid = ~hi & ~lo
        self.assertTrue(((b[mid] <= a[mid]) & (b[mid] >= a[mid] / 8.0)).all())
        # the same settings in the transformers 5 form give the same frequencies
        t5 = dict(raw, rope_parameters={"rope_type": "llama3", "rope_theta": raw["rope_theta"], "factor": 8.0,
                                        "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                        "original_max_position_embeddings": 64})
        self.assertTrue(torch.equal(H.rope_inv_freq(H.HfConfig(t5)), b))


if __name__ == "__main__":
    unittest.main()
