"""The registry from documented NKI names to the tests that check their values.

A value test declares what it covers with `@covers("nl.tan", "nisa.rng", ...)` (module prefix `nl`, `nisa`,
`nt` = nki.typing, `nisa.constants`); `tests/emulator/test_documented_api.py` reads the registry and fails for any
documented name (`nkilab.harness.emulator.documented_api`) without a value test.
"""

REGISTRY: dict[str, list[str]] = {}  # "nl.tan" -> ["test_api_language.py::test_tan", ...]


def covers(*names: str):
    """Mark a test as the value test of `names` (see module docstring)."""
    def deco(fn):
        test_id = f"{fn.__module__.rsplit('.', 1)[-1]}.py::{fn.__name__}"
        for name in names:
            REGISTRY.setdefault(name, []).append(test_id)
        return fn
    return deco
