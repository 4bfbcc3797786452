"""aiogram's reply classes stay built for the process's life (bot/channels/telegram_types.py).

pydantic keeps `Response[list[Update]]` only weakly: without a strong reference, a garbage
collection throws it away and the next getUpdates reply builds it again (~70 ms of CPU).
"""

from __future__ import annotations

import gc
import weakref

from bot.channels.telegram_types import pin_response_models


def test_the_getupdates_reply_class_survives_a_collection() -> None:
    from aiogram.methods.base import Response
    from aiogram.types import Update

    pin_response_models()
    built = weakref.ref(Response[list[Update]])
    gc.collect()
    assert built() is not None, "the reply class was collected: the next reply builds it again"
    assert Response[list[Update]] is built()
