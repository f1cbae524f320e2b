#!/usr/bin/env python3
"""`torchrun` (torch.distributed.run) with one compatibility fix, used by src/trainer/torchrun.ts to launch the
trainer worker as a process group. The arguments are torchrun's own.

The fix: torch 1.13's `Std.from_str("0")` (the default of --redirects and --tee) finds no member on Python 3.11,
whose Flag iteration skips the zero member, and torchrun then fails before starting any process
(`'NoneType' object has no attribute 'get'`). Where that is the case, zero is mapped to `Std.NONE`; a torch that
parses it correctly runs unpatched. Nothing else differs from `python -m torch.distributed.run`.
"""
import sys


def patch_std():
    from torch.distributed.elastic.multiprocessing import api
    if api.Std.from_str("0") is not None:
        return False
    original = api.Std.from_str.__func__

    def from_str(cls, vm):
        out = original(cls, vm)
        if out is None:
            return cls.NONE
        if isinstance(out, dict):
            return {k: (cls.NONE if v is None else v) for k, v in out.items()}
        return out
    api.Std.from_str = classmethod(from_str)
    return True


if __name__ == "__main__":
    patch_std()
    from torch.distributed.run import main
    sys.argv[0] = "torchrun"
    main()
