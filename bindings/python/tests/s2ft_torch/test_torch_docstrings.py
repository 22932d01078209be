"""Every public module, class, function, method and property of s2ft.torch has a docstring."""

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import inspect
import pkgutil

import s2ft.torch


def test_public_api_is_documented():
    missing = []
    for info in pkgutil.iter_modules(s2ft.torch.__path__, "s2ft.torch."):
        module = __import__(info.name, fromlist=["_"])
        if not inspect.getdoc(module):
            missing.append(info.name)
    for name in s2ft.torch.__all__:
        obj = getattr(s2ft.torch, name)
        if not inspect.isclass(obj) and not callable(obj):
            continue
        if not inspect.getdoc(obj):
            missing.append(name)
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if attr.startswith("_") and attr not in ("__init__",):
                    continue
                target = member.fget if isinstance(member, property) else getattr(member, "__func__", member)
                if callable(target) and not (target.__doc__ or "").strip():
                    missing.append("%s.%s" % (name, attr))
    assert not missing, "undocumented: %s" % missing
