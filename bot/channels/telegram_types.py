"""Build aiogram's Bot API models when they are first used, not all at import.

`import aiogram.types` rebuilds every one of its ~900 pydantic models at once
(`model_rebuild(_types_namespace=...)` at the end of aiogram/types/__init__.py), although each
is declared with `defer_build=True`. pydantic-core compiles a validator and a serializer per
model with the referenced models inlined, so that loop alone costs ~125 MB of RSS (aiogram
issue #1513): more than the rest of the service together, which uses a handful of the models
(Update, Message, the send methods, keyboards).

`defer_aiogram_model_builds()` imports aiogram.types with that loop skipped. What the loop's
namespace gave the models, the names their modules import only under TYPE_CHECKING
(`ChatIdUnion`, `Message` …), is put into those modules' globals instead, name by name as their
annotations use them; pydantic's own lazy build on first use (any path: validation, a method
that embeds the type, `Response[Message]`) then resolves them as aiogram's rebuild would have.
"""

from __future__ import annotations

import re
import sys
from typing import Any

from pydantic import BaseModel

_IDENTIFIER = re.compile(r"[A-Za-z_]\w*")


def defer_aiogram_model_builds() -> bool:
    """Import aiogram.types so that each model is built on first use; False if too late.

    Must run before anything imports aiogram (bot/__init__.py calls it). If aiogram.types is
    already imported, its models are already built and nothing changes.
    """
    if "aiogram.types" in sys.modules:
        return False
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
        import aiogram.types  # noqa: F401  (here, under the patch, on purpose)
    finally:
        BaseModel.model_rebuild = original  # type: ignore[method-assign]
    return True


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
