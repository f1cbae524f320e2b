"""A Hugging Face model as the trainer worker's policy (workers/trainer.py `init {hfModel}`): the model of
workers/hf_model.py, optionally with LoRA adapters (own implementation of peft's LoRA: same math, same file
layout and key names), compute in float32 or under autocast (bfloat16 by default on CUDA, float32 master weights),
optional activation checkpointing, and the checkpoint/export formats: `hf` (a transformers checkpoint
directory), `hf-lora` (a peft adapter directory), `gguf` (workers/hf_gguf.py). It does not implement the
protocol, the loss or the optimizer (trainer.py does, model-agnostic) and never tokenizes.
"""
import base64
import json
import math
import os
import re
import shutil
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

import atomicfile
import hf_model as H

COMPUTE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
LINEAR_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
PEFT_PREFIX = "base_model.model."


class AdapterError(H.CheckpointError):
    """A LoRA adapter this module cannot read or refuses (same fields as CheckpointError)."""


# ----------------------------------------------------------------------------------------------------------------------
# LoRA: y = W x + b + (alpha / r) · B (A x), A [r, in], B [out, r]; only A and B train


class LoraLinear(nn.Linear):
    """An nn.Linear whose weight and bias are the frozen base's (same parameter names, so the base's names are
    unchanged) plus `lora_A` / `lora_B` (peft's names)."""

    def __init__(self, base, r, alpha, rslora=False):
        nn.Module.__init__(self)
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight, self.bias = base.weight, base.bias
        dev = base.weight.device
        self.lora_A = nn.Linear(self.in_features, r, bias=False, device=dev, dtype=torch.float32)
        self.lora_B = nn.Linear(r, self.out_features, bias=False, device=dev, dtype=torch.float32)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))  # peft's default init: B = 0, so ΔW = 0
        nn.init.zeros_(self.lora_B.weight)
        self.r, self.alpha = r, alpha
        self.scaling = alpha / math.sqrt(r) if rslora else alpha / r

    def forward(self, x):
        return F.linear(x, self.weight, self.bias) + self.lora_B(self.lora_A(x.to(self.lora_A.weight.dtype))) * self.scaling

    def delta(self):
        """The merged update (alpha / r) · B A, [out, in], float32."""
        return (self.lora_B.weight.float() @ self.lora_A.weight.float()) * self.scaling


def target_matches(targets, name):
    """peft's rule: a list matches a module whose name equals an entry or ends with '.' + entry; a string is a
    regular expression over the full name; 'all-linear' is every projection (never the head)."""
    if targets == "all-linear":
        return name.split(".")[-1] in LINEAR_NAMES
    if isinstance(targets, str):
        return re.fullmatch(targets, name) is not None
    return any(name == t or name.endswith("." + t) for t in targets)


def apply_lora(model, r, alpha, targets, rslora=False, file="lora"):
    """Replaces every targeted nn.Linear with a LoraLinear; returns the replaced module names."""
    if not (isinstance(r, int) and r > 0):
        raise AdapterError("bad-config", file, "r", f"{file}: r must be a positive integer, got {r!r}")
    names = []
    for name, mod in list(model.named_modules()):
        if isinstance(mod, nn.Linear) and not isinstance(mod, LoraLinear) and name != "lm_head" and \
                target_matches(targets, name):
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name)
            setattr(parent, child, LoraLinear(mod, r, alpha, rslora))
            names.append(name)
    if not names:
        raise AdapterError("bad-config", file, "target_modules", f"{file}: target_modules {targets!r} match no "
                                                                 f"linear layer (e.g. {', '.join(LINEAR_NAMES)})")
    return names


def lora_modules(model):
    return [(n, m) for n, m in model.named_modules() if isinstance(m, LoraLinear)]


# peft features this implementation refuses when set (each is falsy when off)
REFUSED_ADAPTER_FIELDS = ("use_dora", "fan_in_fan_out", "modules_to_save", "layers_to_transform", "target_parameters",
                          "rank_pattern", "alpha_pattern", "lora_bias", "trainable_token_indices")


def read_adapter_config(directory):
    path = os.path.join(directory, "adapter_config.json")
    try:
        with open(path) as f:
            cfg = json.load(f)
    except FileNotFoundError:
        raise AdapterError("missing-file", path, "adapter_config.json", f"{path}: no such file")
    except ValueError as e:
        raise AdapterError("bad-config", path, "adapter_config.json", f"{path}: not JSON ({e})")
    if cfg.get("peft_type", "LORA") != "LORA":
        raise AdapterError("unsupported-config", path, "peft_type", f"{path}: peft_type {cfg['peft_type']!r} "
                                                                    f"is not supported (LORA only)")
    if cfg.get("bias", "none") != "none":
        raise AdapterError("unsupported-config", path, "bias", f"{path}: bias {cfg['bias']!r} is not supported")
    for key in REFUSED_ADAPTER_FIELDS:
        if cfg.get(key):
            raise AdapterError("unsupported-config", path, key, f"{path}: {key} = {cfg[key]!r} is not supported")
    for key in ("r", "lora_alpha", "target_modules"):
        if cfg.get(key) is None:
            raise AdapterError("bad-config", path, key, f"{path}: missing field {key!r}")
    return cfg, path


def load_adapter(model, directory):
    """Applies the peft adapter in `directory` (adapter_config.json + adapter_model.safetensors) to `model`."""
    cfg, cfg_path = read_adapter_config(directory)
    targets = cfg["target_modules"]
    names = apply_lora(model, int(cfg["r"]), float(cfg["lora_alpha"]), targets, bool(cfg.get("use_rslora")), cfg_path)
    wpath = os.path.join(directory, "adapter_model.safetensors")
    tensors, _ = H.read_safetensors(wpath)
    expected = {}
    for n, m in lora_modules(model):
        expected[f"{PEFT_PREFIX}{n}.lora_A.weight"] = m.lora_A.weight
        expected[f"{PEFT_PREFIX}{n}.lora_B.weight"] = m.lora_B.weight
    for key, p in expected.items():
        if key not in tensors:
            raise AdapterError("missing-tensor", wpath, key, f"{wpath}: missing tensor {key}")
        if list(tensors[key].shape) != list(p.shape):
            raise AdapterError("tensor-shape", wpath, key, f"{wpath}: tensor {key} has shape "
                                                           f"{list(tensors[key].shape)}, expected {list(p.shape)}")
        with torch.no_grad():
            p.copy_(tensors[key].to(device=p.device, dtype=p.dtype))
    for key in tensors:
        if key not in expected:
            raise AdapterError("unexpected-tensor", wpath, key, f"{wpath}: tensor {key} matches no targeted module")
    return cfg, names


def save_adapter(model, directory, lora_cfg, base_path):
    """peft's layout: adapter_config.json + adapter_model.safetensors (keys base_model.model.<module>.lora_X.weight)."""
    os.makedirs(directory, exist_ok=True)
    tensors = []
    for n, m in lora_modules(model):
        tensors.append((f"{PEFT_PREFIX}{n}.lora_A.weight", m.lora_A.weight.detach().float().cpu()))
        tensors.append((f"{PEFT_PREFIX}{n}.lora_B.weight", m.lora_B.weight.detach().float().cpu()))
    H.write_safetensors(os.path.join(directory, "adapter_model.safetensors"), tensors, {"format": "pt"})
    cfg = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": lora_cfg["r"], "lora_alpha": lora_cfg["alpha"],
           "target_modules": lora_cfg["targetModules"], "lora_dropout": 0.0, "bias": "none", "fan_in_fan_out": False,
           "use_rslora": bool(lora_cfg.get("rslora")), "use_dora": False, "modules_to_save": None,
           "layers_to_transform": None, "layers_pattern": None, "rank_pattern": {}, "alpha_pattern": {},
           "init_lora_weights": True, "inference_mode": True, "base_model_name_or_path": base_path,
           "revision": None}
    with open(os.path.join(directory, "adapter_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    return ["adapter_config.json", "adapter_model.safetensors"]


# ----------------------------------------------------------------------------------------------------------------------
# The policy the worker trains


class HfPolicy:
    """What trainer.py needs of a model: `config` {vocab, context}, `names`/`params` (the trainable tensors, in a
    fixed order), `named()`, `token_logprobs(tokens)`; plus counts, checkpoints and exports."""

    kind = "hf"

    def __init__(self, req, device, protocol_error):
        directory = req["hfModel"]
        want = req.get("dtype") or ("bfloat16" if device.type == "cuda" else "float32")
        if want not in COMPUTE_DTYPES:
            raise protocol_error(f"init: dtype {want!r} is not one of {', '.join(COMPUTE_DTYPES)}")
        self.dtype_name = want
        self.compute = COMPUTE_DTYPES[want]
        lora = req.get("lora")
        adapter = req.get("loraAdapter")
        if lora is not None and adapter is not None:
            raise protocol_error("init: give lora (a new adapter) or loraAdapter (a saved one), not both")
        self.device = device
        # frozen LoRA bases are stored in the compute dtype (half the memory); full training keeps float32 masters
        store = self.compute if (lora is not None or adapter is not None) else torch.float32
        self.model, self.ckpt = H.load_pretrained(directory, device=device, dtype=store)
        self.directory = directory
        self.lora = None
        if lora is not None:
            targets = lora.get("targetModules", ["q_proj", "k_proj", "v_proj", "o_proj"])
            self.lora = {"r": int(lora.get("r", 8)), "alpha": float(lora.get("alpha", 16)), "targetModules": targets,
                         "rslora": bool(lora.get("rslora", False))}
            apply_lora(self.model, self.lora["r"], self.lora["alpha"], targets, self.lora["rslora"])
        elif adapter is not None:
            cfg, _ = load_adapter(self.model, adapter)
            self.lora = {"r": int(cfg["r"]), "alpha": float(cfg["lora_alpha"]), "targetModules": cfg["target_modules"],
                         "rslora": bool(cfg.get("use_rslora"))}
        if self.lora is not None:
            for n, p in self.model.named_parameters():
                p.requires_grad_(".lora_A." in n or ".lora_B." in n)
        self.model.gradient_checkpointing = bool(req.get("activationCheckpointing", False))
        self.model.train()
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        c = self.ckpt.config
        self.config = {"vocab": c.vocab_size, "context": c.max_position_embeddings, "architecture": c.architecture}
        self.total_params = sum(p.numel() for p in self.model.parameters())
        self.trainable_params = sum(p.numel() for p in self.params)
        self.chunk = int(req.get("headChunkTokens", 4096))

    def named(self):
        return list(zip(self.names, self.params))

    def autocast(self):
        if self.compute == torch.float32:
            return _NoCast()
        return torch.autocast(device_type=self.device.type, dtype=self.compute)

    def token_logprobs(self, tokens):
        with self.autocast():
            lp, ent = H.token_logprobs(self.model, tokens, chunk=self.chunk)
        return lp.float(), ent.float()

    def info(self):
        c = self.ckpt.config
        return {"architecture": c.architecture, "dtype": self.dtype_name, "trainableParams": self.trainable_params,
                "params": self.total_params, "lora": self.lora, "sourceDtypes": sorted(set(self.ckpt.dtypes.values())),
                "activationCheckpointing": self.model.gradient_checkpointing}

    # -- checkpoints (weights + optimizer state, float32, exact resume) -------------------------------------------------

    def save(self, directory, m, v, state):
        """The checkpoint directory, atomically: written into a hidden temp sibling (every file fsynced), then
        renamed into place (an existing one moved aside first and removed after), so `directory` is either absent,
        the old checkpoint or the whole new one, also after a SIGKILL. Besides the weights and the AdamW moments it
        keeps the optimizer's step (bias correction), the policy version and torch's RNG states (CPU and CUDA)."""
        directory = os.path.abspath(directory)
        parent, base = os.path.dirname(directory), os.path.basename(directory)
        os.makedirs(parent, exist_ok=True)
        tag = f"{os.getpid()}-{int(time.time() * 1000)}"
        tmp = os.path.join(parent, f".{base}.tmp-{tag}")
        try:
            os.makedirs(tmp)
            if self.lora is not None:
                save_adapter(self.model, tmp, self.lora, os.path.abspath(self.directory))
            else:
                H.save_pretrained(self.model, tmp, source=self.ckpt, dtype=torch.float32)
            H.write_safetensors(os.path.join(tmp, "optimizer.safetensors"),
                                [("optim.m." + n, x) for n, x in zip(self.names, m)] +
                                [("optim.v." + n, x) for n, x in zip(self.names, v)], {"format": "arpo-optimizer-v1"})
            full = {**state, "kind": "hf-lora" if self.lora is not None else "hf", "names": self.names, "rng": rng_state()}
            atomicfile.write_atomic(os.path.join(tmp, "arpo_trainer_state.json"), [json.dumps(full).encode("utf-8")])
            for f in os.listdir(tmp):
                _fsync(os.path.join(tmp, f))
            _fsync(tmp)
            old = None
            if os.path.exists(directory):
                old = os.path.join(parent, f".{base}.old-{tag}")
                os.rename(directory, old)
            os.rename(tmp, directory)
            _fsync(parent)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def load(self, directory, protocol_error):
        """Weights (and, when present, optimizer moments) from a directory written by `save` or `export`;
        returns (state dict, m, v) with m, v None when the directory has no optimizer state."""
        state_path = os.path.join(directory, "arpo_trainer_state.json")
        state = {}
        if os.path.exists(state_path):
            with open(state_path) as f:
                state = json.load(f)
            if state.get("rng") is not None:
                set_rng_state(state["rng"])
        params = dict(self.model.named_parameters())
        if self.lora is not None:
            path = os.path.join(directory, "adapter_model.safetensors")
            tensors, _ = H.read_safetensors(path)
            src = {k[len(PEFT_PREFIX):]: x for k, x in tensors.items() if k.startswith(PEFT_PREFIX)}
        else:
            cfg = H.read_config(os.path.join(directory, "config.json"))
            if cfg.param_shapes() != self.ckpt.config.param_shapes():
                raise protocol_error(f"load: {directory} holds a different model than the worker runs "
                                     f"({cfg.architecture}, {cfg.num_layers} layers, hidden {cfg.hidden_size})")
            files = H.checkpoint_files(directory)
            src = {}
            for file in sorted(set(files.values())):
                t, _ = H.read_safetensors(file)
                src.update(t)
            path = directory
        with torch.no_grad():
            for n in self.names:
                if n not in src:
                    raise H.CheckpointError("missing-tensor", path, n, f"{path}: missing tensor {n}")
                if list(src[n].shape) != list(params[n].shape):
                    raise H.CheckpointError("tensor-shape", path, n, f"{path}: tensor {n} has shape "
                                                                     f"{list(src[n].shape)}, expected {list(params[n].shape)}")
                params[n].copy_(src[n].to(device=params[n].device, dtype=params[n].dtype))
        opt = os.path.join(directory, "optimizer.safetensors")
        if os.path.exists(opt):
            t, _ = H.read_safetensors(opt)
            if all(("optim.m." + n) in t and ("optim.v." + n) in t for n in self.names):
                m = [t["optim.m." + n].to(self.device, torch.float32) for n in self.names]
                v = [t["optim.v." + n].to(self.device, torch.float32) for n in self.names]
                return state, m, v
        return state, None, None

    # -- exports ------------------------------------------------------------------------------------------------------

    def merged_state(self):
        """HF name -> tensor of the full model with every adapter merged in (W + (alpha/r)·B·A), float32."""
        out = {}
        deltas = {n + ".weight": m.delta() for n, m in lora_modules(self.model)}
        for n, p in self.model.named_parameters():
            if ".lora_A." in n or ".lora_B." in n:
                continue
            x = p.detach().float()
            out[n] = x + deltas[n] if n in deltas else x
        return out

    def export(self, path, fmt, dtype=None):
        if fmt == "hf":
            state = self.merged_state()
            shell = _StateModel(self.ckpt.config, state)
            files = H.save_pretrained(shell, path, source=self.ckpt, dtype=COMPUTE_DTYPES.get(dtype) if dtype else None)
            return {"files": files}
        if fmt == "hf-lora":
            if self.lora is None:
                raise ValueError("export: format hf-lora needs a LoRA model (init with lora or loraAdapter)")
            return {"files": save_adapter(self.model, path, self.lora, os.path.abspath(self.directory))}
        if fmt == "gguf":
            import hf_gguf
            if dtype not in (None, "float32", "float16"):
                raise ValueError(f"export: gguf dtype {dtype!r} (float32 or float16)")
            hf_gguf.write_gguf(path, self.ckpt, self.merged_state(),
                               hf_gguf.GGML_F16 if dtype == "float16" else hf_gguf.GGML_F32)
            return {"files": [os.path.basename(path)]}
        raise ValueError(f"export: unknown format {fmt!r} (hf, hf-lora, gguf)")


def rng_state():
    """torch's global generator states (CPU, and each CUDA device's when CUDA is up), base64, for a checkpoint."""
    out = {"cpu": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode("ascii")}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = [base64.b64encode(s.numpy().tobytes()).decode("ascii") for s in torch.cuda.get_rng_state_all()]
    return out


def set_rng_state(rng):
    """Restores what `rng_state` kept (CUDA states only when this process has as many devices)."""
    def tensor(b64):
        return torch.tensor(list(base64.b64decode(b64)), dtype=torch.uint8)
    torch.set_rng_state(tensor(rng["cpu"]))
    cuda = rng.get("cuda")
    if cuda and torch.cuda.is_available() and torch.cuda.device_count() == len(cuda):
        torch.cuda.set_rng_state_all([tensor(s) for s in cuda])


def _fsync(path):
    """fsync a file or directory by path (best effort for directories on platforms that cannot open them)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class _NoCast:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


class _StateModel:
    """Just enough of an HfCausalLM for save_pretrained: a config and named_parameters over a state dict."""

    def __init__(self, config, state):
        self.config, self.state = config, state

    def named_parameters(self):
        return iter(self.state.items())
