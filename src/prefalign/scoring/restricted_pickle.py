"""Read tensors out of a pickled whole module without running any of its code.

Some releases (MPS's ``MPS_overall_checkpoint.pth``) are ``torch.save(model)``: a pickle that
names the authors' classes. ``torch.load(weights_only=False)`` would import and run them (and
anything else the file names). Here every class outside a short allow-list of torch's tensor
rebuilders becomes an inert ``Stub`` that only records its state; the state dict is then read
off the stubs' ``_parameters`` / ``_buffers`` / ``_modules``. Nothing from the file is called.
"""

from __future__ import annotations

import collections
import pickle
from pathlib import Path
from types import SimpleNamespace

import torch

# (module, name) a checkpoint may call: tensor and storage rebuilders, and plain containers.
_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("torch", "Size"): torch.Size,
    ("torch", "device"): torch.device,
}
_DTYPES = {
    name: getattr(torch, name)
    for name in ("float32", "float16", "bfloat16", "float64", "int64", "int32", "bool", "uint8")
}


class Stub:
    """Stands in for any class a pickle names; keeps the state it is given, runs nothing."""

    _stub_name = "?"

    def __init__(self, *args, **kwargs):
        self._stub_args = args

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2:  # (dict, slots)
            state = {**(state[0] or {}), **(state[1] or {})}
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self.__dict__["_stub_state"] = state

    def __reduce__(self):  # pragma: no cover - never re-pickled
        raise TypeError("stubs are not picklable")


def _stub_class(module: str, name: str) -> type:
    return type(name, (Stub,), {"_stub_name": f"{module}.{name}", "__module__": "prefalign.stub"})


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if module == "__builtin__":  # protocol-2 pickles (torch.save's) name builtins so
            module = "builtins"
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name.endswith("Storage"):
            return getattr(torch, name) if hasattr(torch, name) else _stub_class(module, name)
        if module == "torch" and name in _DTYPES:
            return _DTYPES[name]
        return _stub_class(module, name)


restricted_pickle_module = SimpleNamespace(
    Unpickler=_Unpickler, load=lambda f, **kw: _Unpickler(f, **kw).load(), __name__="restricted"
)


def load_stubbed(path: str | Path):
    """``torch.load`` with every non-tensor class replaced by a ``Stub`` (tensors only are real)."""
    return torch.load(
        str(path), map_location="cpu", weights_only=False, pickle_module=restricted_pickle_module
    )


def module_state_dict(obj, prefix: str = "") -> dict[str, torch.Tensor]:
    """The state dict of a stubbed ``nn.Module`` tree (parameters and persistent buffers)."""
    out: dict[str, torch.Tensor] = {}
    state = getattr(obj, "__dict__", {})
    non_persistent = set(state.get("_non_persistent_buffers_set", ()) or ())
    for key in ("_parameters", "_buffers"):
        for name, tensor in (state.get(key) or {}).items():
            if isinstance(tensor, torch.Tensor) and not (key == "_buffers" and name in non_persistent):
                out[prefix + name] = tensor.detach()
    for name, child in (state.get("_modules") or {}).items():
        if child is not None:
            out.update(module_state_dict(child, f"{prefix}{name}."))
    return out
