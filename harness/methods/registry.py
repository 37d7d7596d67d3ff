"""The method registry: every localization method is one `Method` object, found here by its job name.

Code that behaves differently per method asks the method object (`get_method(job.method).…`) instead of
comparing `job.method` with a string; a new method is one module in `harness/methods/` plus one line here.
"""

from __future__ import annotations

from harness.errors import JobError, did_you_mean
from harness.methods.attn_contrib import AttnContrib
from harness.methods.base import Method
from harness.methods.causal_trace import CausalTrace
from harness.methods.swap import AttnPatch, LocoGen

METHODS: dict[str, Method] = {m.name: m for m in (LocoGen(), AttnPatch(), CausalTrace(), AttnContrib())}
METHOD_NAMES: tuple[str, ...] = tuple(METHODS)


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise JobError(f"method: unknown method '{name}'{did_you_mean(name, METHODS)}; expected one of "
                       + ", ".join(METHODS)) from None
