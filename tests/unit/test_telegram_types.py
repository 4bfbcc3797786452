"""aiogram's models are built on first use (bot/channels/telegram_types.py): each can be."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# A fresh interpreter: in the test process aiogram may already have been imported by others.
CHECK = textwrap.dedent(
    """
    import bot  # defers the builds, as the service does
    import aiogram.methods
    import aiogram.types
    from pydantic import BaseModel

    assert not aiogram.types.Update.__pydantic_complete__, "Update was built at import"
    update = aiogram.types.Update.model_validate(
        {"update_id": 1, "message": {"message_id": 2, "date": 0, "text": "hej",
         "chat": {"id": 5, "type": "private"}}}
    )
    assert update.message.chat.id == 5
    models = [
        getattr(package, name)
        for package in (aiogram.types, aiogram.methods)
        for name in package.__all__
    ]
    models = [m for m in models if isinstance(m, type) and issubclass(m, BaseModel)]
    broken = []
    for model in models:
        try:
            model.model_rebuild(raise_errors=True, _parent_namespace_depth=0)
            assert model.__pydantic_complete__
        except Exception as exc:
            broken.append(f"{model.__name__}: {exc}")
    assert not broken, broken
    print(len(models))
    """
)


def test_every_bot_api_model_builds_when_first_used() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout) > 500
