"""`nl.NKIObject`: the base of kernel-side classes, with the initializers the NKI language guide describes.

"The compiler will create the initializer functions __init__ and __post_init__, if they are not provided by the
user" (S-LG "Class Support"), with or without @dataclass: for `x: int` and `y: bool = False` the default is
`__init__(self, x=None, y=False)` setting both and then calling `self.__post_init__()`. Fields are the annotated
class attributes (declaration order, base classes first), then the plain class attributes that are data (not
methods, properties or dunders) — a default is the class attribute's value, None for an annotation without one
(a list / dict / set default is copied per instance, a dataclass `default_factory` is called). A class that
defines its own `__init__` keeps it. @dataclass alone would miss the plain class attributes (AWS's nki-library
declares `@dataclass class SectionParams(nl.NKIObject): section_idx = None ...` and constructs it with keywords),
so a dataclass NKIObject with such attributes is constructed by the synthesized initializer; otherwise
@dataclass's own __init__ runs (it calls the inherited no-op `__post_init__`). Equality is structural (same
class, same instance dictionary), as S-LG says of NKI objects.
"""

from __future__ import annotations

import copy
import dataclasses


def fields(cls) -> dict:
    """{name: default} of an NKIObject class's synthesized-initializer fields (see module docstring)."""
    out: dict = {}
    for klass in reversed(cls.__mro__):
        if klass in (object, NKIObject):
            continue
        for name in klass.__dict__.get("__annotations__", {}):
            if not name.startswith("__"):
                out[name] = klass.__dict__.get(name, out.get(name))
        for name, value in klass.__dict__.items():
            if name.startswith("__") or name in out or callable(value) or \
                    isinstance(value, (property, staticmethod, classmethod)):
                continue
            out[name] = value
    return out


def _default(cls, name: str, default):
    field = getattr(cls, "__dataclass_fields__", {}).get(name)
    if field is not None and field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return copy.copy(default) if isinstance(default, (list, dict, set)) else default


class _NKIObjectType(type):
    """Routes the construction of a dataclass NKIObject that has plain (non-field) attributes to the synthesized
    initializer (see module docstring)."""

    def __call__(cls, *args, **kwargs):
        dc_fields = getattr(cls, "__dataclass_fields__", None)
        if dc_fields is not None and set(fields(cls)) - set(dc_fields):
            obj = cls.__new__(cls)
            NKIObject.__init__(obj, *args, **kwargs)
            return obj
        return super().__call__(*args, **kwargs)


class NKIObject(metaclass=_NKIObjectType):
    """Base class for NKI kernel dataclasses and configuration objects (see module docstring)."""

    def __init__(self, *args, **kwargs):
        cls = type(self)
        spec = fields(cls)
        names = list(spec)
        if len(args) > len(names):
            raise TypeError(f"{type(self).__name__}(): takes {len(names)} positional arguments ({names}), "
                            f"got {len(args)}")
        values = dict(zip(names, args))
        for key, value in kwargs.items():
            if key not in spec:
                raise TypeError(f"{type(self).__name__}(): unexpected keyword argument {key!r}; fields are {names}")
            if key in values:
                raise TypeError(f"{type(self).__name__}(): got multiple values for argument {key!r}")
            values[key] = value
        for name in names:
            value = values[name] if name in values else _default(cls, name, spec[name])
            object.__setattr__(self, name, value)
        self.__post_init__()

    def __post_init__(self) -> None:
        """Called at the end of the synthesized __init__ (and by @dataclass's); a no-op unless overridden."""

    def __eq__(self, other) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.__dict__ == other.__dict__

    def __hash__(self) -> int:
        """Structural, like ==: TypeError when a field value is unhashable."""
        return hash((type(self), tuple(self.__dict__.items())))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items())
        return f"{type(self).__name__}({args})"
