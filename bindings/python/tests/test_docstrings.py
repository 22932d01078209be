"""Every public module, class, function, method and property of the package has a docstring."""

import dataclasses
import inspect

import s2ft


def test_public_api_is_documented():
    missing = []
    for name in s2ft.__all__:
        obj = getattr(s2ft, name)
        if not inspect.isclass(obj) and not callable(obj):
            continue
        if not inspect.getdoc(obj):
            missing.append(name)
        if inspect.isclass(obj) and not issubclass(obj, int):
            for attr, member in vars(obj).items():
                if attr.startswith("_") and attr not in ("__init__", "__enter__", "__exit__"):
                    continue
                if attr == "__init__" and dataclasses.is_dataclass(obj):
                    continue  # generated; the class docstring describes the fields
                target = member.fget if isinstance(member, property) else getattr(member, "__func__", member)
                if callable(target) and not (target.__doc__ or "").strip():
                    missing.append("%s.%s" % (name, attr))
    assert not missing, "undocumented: %s" % missing
