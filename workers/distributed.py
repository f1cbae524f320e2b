"""The trainer worker (workers/trainer.py) as one torchrun group: data parallelism past one process (issue 18).

Rank 0 speaks the stdio protocol (requests on stdin, replies on stdout, exactly as a single worker) and broadcasts
every request that changes the weights or the optimizer (`init`, `train_step`, `sft_step`, `load`) to the other
ranks. Each rank computes its share of the request's micro-batches (micro-batch i on rank i mod world) with the
request's **global** normalizer, then the gradients and the step's sums (loss, token counts, clipped tokens, …) are
all-reduced — the bucketed gradient all-reduce DDP does, written out because the embedded-layout model is a list of
tensors, not an nn.Module — so every rank applies the step one process would apply (up to float summation order)
and the replicas stay identical. Read-only ops (`logprobs`, `loss`, `save`, `export`, `version`, the colocated
engine's `engine_*`) run on rank 0 alone over the whole batch. After each broadcast op every rank reports whether it
failed; rank 0 replies with the first failing rank's error, named (`rank 1: …`). A broken collective (a rank died)
leaves the others waiting to be ended by torchrun, which then reports the dead rank as the root cause (the
TypeScript side reads it from torchrun's summary: src/trainer/torchrun.ts).

It does not shard parameters: FSDP is refused with a typed error (Debian's torch 1.13 cannot import
torch.distributed.fsdp on Python 3.11, and this worker's hand-written AdamW works on whole tensors). It does not
launch processes (torchrun does; src/trainer/torchrun.ts builds the command) and knows nothing of the model.
"""
import json
import os
import sys
import time
import traceback

BROADCAST_OPS = ("init", "train_step", "sft_step", "load")
REDUCING_OPS = ("train_step", "sft_step")
BUCKET_ELEMENTS = 25 * 1024 * 1024 // 4  # DDP's default bucket: 25 MiB of float32


def launched_by_torchrun():
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and "LOCAL_RANK" in os.environ


class GroupBroken(Exception):
    """A collective failed (a peer is gone): this rank can only wait to be ended."""


class Group:
    """This rank's view of the process group, and the hooks trainer.py's step functions call (trainer.DIST)."""

    def __init__(self, T):
        self.T = T
        self.rank = int(os.environ["RANK"])
        self.world = int(os.environ["WORLD_SIZE"])
        self.local_rank = int(os.environ["LOCAL_RANK"])
        self.sharding = True  # False while rank 0 serves a read-only op alone
        self.reduce_pending = False
        self.request = {}

    # -- set up ------------------------------------------------------------------------------------------------------

    def start(self):
        t = self.T.need_torch()
        import torch.distributed as dist
        self.dist = dist
        cuda = t.cuda.is_available() and os.environ.get("ARPO_DIST_BACKEND", "") != "gloo"
        if cuda:
            t.cuda.set_device(self.local_rank % t.cuda.device_count())
        self.backend = "nccl" if cuda else "gloo"
        dist.init_process_group(self.backend)
        # objects (requests, failure reports) travel on a gloo group even when gradients go over NCCL
        self.control = dist.new_group(backend="gloo") if self.backend != "gloo" else None

    # -- the hooks trainer.py calls ----------------------------------------------------------------------------------

    def starts(self, n, rows):
        """The first row of each micro-batch this rank computes."""
        starts = list(range(0, n, rows))
        return starts[self.rank::self.world] if self.sharding else starts

    def reduce(self, st, sums):
        """Sums the gradients (in place, in .grad) and `sums` (numbers) over the ranks; returns the summed numbers.
        Every rank of a reducing op calls this exactly once, or `fail_reduce` when it failed before getting here."""
        if not self.sharding:
            return sums
        T, torch = self.T, self.T.torch
        if T.DEBUG and self.request.get("debugReduceDelayS"):
            time.sleep(float(self.request["debugReduceDelayS"]))  # lets tests kill a rank mid-step
        self.reduce_pending = False
        flag = self._collective(lambda: self._all_reduce_values([0.0]))
        if flag[0] > 0:
            raise self.T.WorkerError("internal", "another rank failed during this step (see the reply's rank)")
        params = st.model.params
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        bucket = []
        size = 0
        for p in params:
            bucket.append(p)
            size += p.numel()
            if size >= BUCKET_ELEMENTS:
                self._collective(lambda: self._all_reduce_bucket(bucket))
                bucket, size = [], 0
        if bucket:
            self._collective(lambda: self._all_reduce_bucket(bucket))
        out = self._collective(lambda: self._all_reduce_values([float(x) for x in sums]))
        return [int(round(v)) if isinstance(s, int) else v for v, s in zip(out, sums)]

    def fail_reduce(self):
        """The matching collectives for a rank that failed before its reduce (so no rank waits forever)."""
        self.reduce_pending = False
        self._collective(lambda: self._all_reduce_values([1.0]))

    # -- collectives -------------------------------------------------------------------------------------------------

    def _device(self):
        t = self.T.torch
        return t.device("cuda", t.cuda.current_device()) if self.backend == "nccl" else t.device("cpu")

    def _all_reduce_values(self, values):
        t = self.T.torch
        x = t.tensor(values, dtype=t.float64, device=self._device())
        self.dist.all_reduce(x)
        return x.tolist()

    def _all_reduce_bucket(self, params):
        t = self.T.torch
        flat = t.cat([p.grad.reshape(-1).to(t.float32) for p in params])
        if flat.device != self._device():
            flat = flat.to(self._device())
        self.dist.all_reduce(flat)
        at = 0
        for p in params:
            n = p.numel()
            p.grad.copy_(flat[at:at + n].reshape(p.shape).to(device=p.grad.device, dtype=p.grad.dtype))
            at += n

    def _gather_object(self, obj):
        out = [None] * self.world
        self.dist.all_gather_object(out, obj, group=self.control)
        return out

    def _broadcast_object(self, obj):
        box = [obj]
        self.dist.broadcast_object_list(box, src=0, group=self.control)
        return box[0]

    def _collective(self, fn):
        try:
            return fn()
        except Exception as e:  # gloo: "Connection closed by peer", NCCL: a timeout or abort
            raise GroupBroken(f"rank {self.rank}: a collective failed: {type(e).__name__}: {e}")

    # -- serving -----------------------------------------------------------------------------------------------------

    def run(self, st, req):
        """Runs one broadcast op on this rank; then every rank learns every rank's outcome. Returns (out, error)
        where error is None or (kind, message) naming the first failing rank (this rank first)."""
        T = self.T
        op = req.get("op")
        self.request = req
        self.reduce_pending = op in REDUCING_OPS
        out, mine = None, None
        try:
            fn = T.OPS.get(op)
            if fn is None:
                raise T.WorkerError("protocol", f"unknown op {op!r}")
            out = fn(st, req)
            if self.reduce_pending:  # an op that never reached its reduce (e.g. an empty share) still takes part
                self.reduce(st, [])
        except GroupBroken:
            raise
        except Exception as e:
            kind, message = T.classify(e)
            if not isinstance(e, T.WorkerError):
                traceback.print_exc(file=sys.stderr)
            mine = (kind, message)
            if self.reduce_pending:
                self.fail_reduce()
        outcomes = self._collective(lambda: self._gather_object(None if mine is None else [mine[0], mine[1]]))
        failed = [(r, o) for r, o in enumerate(outcomes) if o is not None]
        if not failed:
            return out, None
        # a rank's own error first; otherwise the first failing rank's; "internal" echoes of another rank's
        # failure ("another rank failed") are skipped in favour of the cause
        causes = [(r, o) for r, o in failed if "another rank failed" not in o[1]] or failed
        r, (kind, message) = next(((r, o) for r, o in causes if r == self.rank), causes[0])
        prefix = "" if self.world == 1 else f"rank {r}: "
        return None, (kind, prefix + message)

    def wait_to_be_ended(self, why):
        """A peer is gone: torchrun notices, ends this rank and reports the dead one; exit if it never does."""
        sys.stderr.write(f"arpo distributed: {why}; waiting for torchrun to end the group\n")
        sys.stderr.flush()
        time.sleep(float(os.environ.get("ARPO_DIST_ORPHAN_S", "60")))
        os._exit(70)


def check_sharding(T, req):
    """`init {sharding}` or ARPO_SHARDING (set by src/trainer/torchrun.ts): "ddp" (default, replicated) or "fsdp"
    (refused here: see the module comment)."""
    mode = req.get("sharding") or os.environ.get("ARPO_SHARDING") or "ddp"
    if mode == "ddp":
        return
    if mode != "fsdp":
        raise T.WorkerError("protocol", f"init: sharding {mode!r} is not one of ddp, fsdp")
    try:
        import torch.distributed.fsdp  # noqa: F401
    except Exception as e:
        raise T.WorkerError("protocol", f"init: sharding fsdp needs torch.distributed.fsdp, which torch "
                                        f"{T.torch.__version__} on Python {sys.version.split()[0]} cannot import "
                                        f"({type(e).__name__}: {str(e)[:160]}); use sharding ddp")
    raise T.WorkerError("protocol", f"init: sharding fsdp is not implemented by this worker (torch "
                                    f"{T.torch.__version__} could import it; the worker's AdamW works on whole "
                                    f"tensors); use sharding ddp")


def main(T):
    """The worker's main loop under torchrun; T is the trainer module (workers/trainer.py)."""
    sys.stdout = sys.stderr
    g = Group(T)
    try:
        g.start()
    except Exception as e:
        sys.stderr.write(f"arpo distributed: rank {os.environ.get('RANK')}: could not join the group: {e}\n")
        return 71
    T.DIST = g
    _init = T.OPS["init"]

    def init(st, req):
        check_sharding(T, req)
        out = _init(st, req)
        return {**out, "worldSize": g.world, "backend": g.backend}
    T.OPS["init"] = init
    version = T.OPS["version"]
    T.OPS["version"] = lambda st, req: {**version(st, req), "worldSize": g.world, "backend": g.backend}
    st = T.State()
    try:
        return serve_rank0(T, g, st) if g.rank == 0 else serve_follower(T, g, st)
    except GroupBroken as e:
        g.wait_to_be_ended(str(e))


def serve_follower(T, g, st):
    while True:
        req = g._collective(lambda: g._broadcast_object(None))
        if req is None:
            return 0
        if req.get("op") == "_ranks":
            ranks_of(g)
            continue
        g.run(st, req)


def ranks_of(g):
    """Every rank's pid and device (the `ranks` op: tests kill a chosen rank by pid)."""
    return g._collective(lambda: g._gather_object({"rank": g.rank, "pid": os.getpid(),
                                                    "host": os.uname().nodename}))


def serve_rank0(T, g, st):
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        rid = None
        try:
            req = json.loads(line)
            if not isinstance(req, dict):
                raise T.WorkerError("protocol", "a request must be a JSON object")
            rid = req.get("id")
            op = req.get("op")
            if op == "shutdown":
                g._collective(lambda: g._broadcast_object(None))
                T.reply({"id": rid, "ok": True})
                return 0
            t0 = time.time()
            if op == "ranks":
                g._collective(lambda: g._broadcast_object({"op": "_ranks"}))
                T.reply({"id": rid, "ok": True, "ms": (time.time() - t0) * 1000, "ranks": ranks_of(g)})
                continue
            if op in BROADCAST_OPS:
                if op in REDUCING_OPS and req.get("sequencesFile") is not None:
                    # the batch travels inside the broadcast: other nodes need not see rank 0's files
                    req = {**{k: v for k, v in req.items() if k != "sequencesFile"},
                           "sequences": T.sequences_of(req, op)}
                g._collective(lambda: g._broadcast_object(req))
                out, err = g.run(st, req)
                if err is not None:
                    raise T.WorkerError(*err)
            else:
                fn = T.OPS.get(op)
                if fn is None:
                    raise T.WorkerError("protocol", f"unknown op {op!r} (one of {', '.join(sorted(T.OPS))}, ranks, "
                                                    f"shutdown)")
                g.sharding = False
                try:
                    out = fn(st, req)
                finally:
                    g.sharding = True
            T.reply({"id": rid, "ok": True, "ms": (time.time() - t0) * 1000, **out})
        except GroupBroken:
            raise
        except json.JSONDecodeError as e:
            T.reply({"id": None, "ok": False, "error": {"kind": "protocol", "message": f"request is not JSON: {e}"}})
        except Exception as e:
            kind, message = T.classify(e)
            if not isinstance(e, T.WorkerError):
                traceback.print_exc(file=sys.stderr)
            T.reply({"id": rid, "ok": False, "error": {"kind": kind, "message": message}})
    g._collective(lambda: g._broadcast_object(None))  # stdin closed: end every rank
    return 0
