"""Build aiogram's Bot API models when they are first used, not all at import.

`import aiogram.types` rebuilds every one of its ~900 pydantic models at once
(`model_rebuild(_types_namespace=...)` at the end of aiogram/types/__init__.py), although each
is declared with `defer_build=True`. pydantic-core compiles a validator and a serializer per
model with the referenced models inlined, so that loop alone costs ~125 MB of RSS (aiogram
issue #1513): more than the rest of the service together, which uses a handful of the models
(Update, Message, the send methods, keyboards).

While aiogram/types/__init__.py runs with the builds deferred, that loop is skipped. What the
loop's namespace gave the models, the names their modules import only under TYPE_CHECKING
(`ChatIdUnion`, `Message` …), is put into those modules' globals instead, name by name as their
annotations use them; pydantic's own lazy build on first use (any path: validation, a method
that embeds the type, `Response[Message]`) then resolves them as aiogram's rebuild would have.

Importing aiogram itself takes seconds, and most commands (`ankomst --help`, `token create`,
`report`) never need it. So `bot/__init__.py` only calls `defer_aiogram_model_builds_on_import()`,
which costs nothing: it hooks the import system so that the deferral happens when, and only
when, something first imports aiogram.types (whichever module that is).
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import re
import sys
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import Any

from pydantic import BaseModel

_IDENTIFIER = re.compile(r"[A-Za-z_]\w*")
_TYPES = "aiogram.types"


def defer_aiogram_model_builds() -> bool:
    """Import aiogram.types now, so that each model is built on first use; False if too late.

    If aiogram.types is already imported, its models are already built and nothing changes.
    """
    if _TYPES in sys.modules:
        return False
    with _rebuilds_deferred():
        import aiogram.types  # noqa: F401  (here, under the patch, on purpose)
    return True


def defer_aiogram_model_builds_on_import() -> bool:
    """Defer the model builds whenever aiogram.types is first imported; False if too late.

    Imports nothing of aiogram: it adds a finder to `sys.meta_path` that wraps the loader of
    aiogram.types, once, and then removes itself. Calling it again is harmless.
    """
    if _TYPES in sys.modules:
        return False
    if not any(isinstance(f, _DeferOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _DeferOnImport())
    return True


@contextlib.contextmanager
def _rebuilds_deferred() -> Iterator[None]:
    """While inside, aiogram.types' rebuild loop only hands each module its names."""
    original = BaseModel.__dict__["model_rebuild"]

    def remember_namespace(
        cls: type[BaseModel],
        *,
        force: bool = False,
        raise_errors: bool = True,
        _parent_namespace_depth: int = 2,
        _types_namespace: dict[str, Any] | None = None,
    ) -> bool | None:
        if _types_namespace is None or not cls.__module__.startswith("aiogram.types."):
            return original.__func__(  # type: ignore[no-any-return]
                cls,
                force=force,
                raise_errors=raise_errors,
                _parent_namespace_depth=_parent_namespace_depth,
                _types_namespace=_types_namespace,
            )
        _give_module_its_names(cls, _types_namespace)
        return None

    BaseModel.model_rebuild = classmethod(remember_namespace)  # type: ignore[assignment,method-assign]
    try:
        yield
    finally:
        BaseModel.model_rebuild = original  # type: ignore[method-assign]


class _DeferOnImport(importlib.abc.MetaPathFinder):
    """Finds aiogram.types through the other finders and runs its module with builds deferred."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != _TYPES:
            return None
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)  # one import only; also keeps the search below finite
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec: importlib.machinery.ModuleSpec | None = (
                find(fullname, path, target) if find is not None else None
            )
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _DeferringLoader(spec.loader)
                return spec
        return None


class _DeferringLoader(importlib.abc.Loader):
    """Runs the wrapped loader's module with the model builds deferred; delegates the rest."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        try:
            with _rebuilds_deferred():
                self._loader.exec_module(module)
        finally:
            # From here on the module looks as if imported plainly.
            module.__loader__ = self._loader
            if module.__spec__ is not None:
                module.__spec__.loader = self._loader

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


def _give_module_its_names(cls: type[BaseModel], namespace: dict[str, Any]) -> None:
    """Add to the globals of cls's module the names its annotations use and it lacks.

    Inherited annotations too: pydantic evaluates a subclass's inherited fields in the
    subclass's module (MenuButtonCommands gets `web_app: WebAppInfo` from MenuButton).
    """
    module = vars(sys.modules[cls.__module__])
    for ancestor in cls.__mro__:
        for annotation in vars(ancestor).get("__annotations__", {}).values():
            text = annotation if isinstance(annotation, str) else repr(annotation)
            for name in _IDENTIFIER.findall(text):
                if name not in module and name in namespace:
                    module[name] = namespace[name]


# pydantic holds a parametrized generic (`Response[list[Update]]`: the class aiogram validates
# a Bot API reply with) only weakly, so once the garbage collector has run, the next reply
# builds it again: ~70 ms of CPU for getUpdates (measured), every time polling meets it after a
# collection. Those the service meets all the time are held here for the process's life.
_PINNED: list[type[BaseModel]] = []


def pin_response_models() -> None:
    """Keep the reply classes of getUpdates, sendMessage and the true/false methods built."""
    if _PINNED:
        return
    from aiogram.methods.base import Response
    from aiogram.types import Message, Update

    _PINNED.extend([Response[list[Update]], Response[Message], Response[bool]])
