"""The heart of the routine, end to end on real parts: an arrival comes in, every recipient is
told by e-mail and Telegram the same minute, and acknowledges it."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.store import keys
from messages.chat import INVITE_INVALID
from tests.support.world import CHATS, World, arrival, eventually, running_world

HC = "hc-lugnvik"
SCHOOL = "ostersund-skola"
PRESCHOOL = "ostersund-forskola"
SOCIAL = "ostersund-socialtjanst"
RECEPTION = "ostersund-mottagning"
ADDRESS = {
    HC: "hc-lugnvik@regionjh.example.se",
    SCHOOL: "skola@ostersund.example.se",
    PRESCHOOL: "forskola@ostersund.example.se",
    SOCIAL: "socialtjanst@ostersund.example.se",
    RECEPTION: "mottagning@ostersund.example.se",
}


@pytest.fixture
async def world(redis_url: str, redis: object, tmp_path: Path) -> AsyncIterator[World]:
    async with running_world(redis_url, tmp_path) as w:
        yield w


def text_of(mail: object) -> str:
    body = mail.get_body(preferencelist=("plain",))  # type: ignore[attr-defined]
    return str(body.get_content())


def html_of(mail: object) -> str:
    body = mail.get_body(preferencelist=("html",))  # type: ignore[attr-defined]
    return str(body.get_content())


async def test_every_routed_recipient_gets_one_mail_and_one_chat_message(world: World) -> None:
    answer = await world.register(arrival())
    assert answer["version"] == 1 and answer["status"] == "notifying"
    assert re.fullmatch(r"OSD-2026-\d{4}", answer["reference"])
    view = await world.settled(answer["id"])

    assert [r["organisation"] for r in view["recipients"]] == [HC, PRESCHOOL, SCHOOL]
    for org in (HC, PRESCHOOL, SCHOOL):
        mails = world.mails_to(ADDRESS[org])
        assert len(mails) == 1, org
        text = text_of(mails[0])
        assert answer["reference"] in text
        assert "fredag 27 november 2026" in text
        assert "arabiska, dari" in text
        assert "9 år" in text and "4 år" in text
        chat = world.telegram.sent_to(CHATS[org])
        notices = [c for c in chat if answer["reference"] in (c.text or "")]
        assert len(notices) == 1, org
        assert "fredag 27 november 2026" in (notices[0].text or "")
        assert "Mottaget" in str(notices[0].params.get("reply_markup"))
    # Social services only for unaccompanied children.
    assert world.mails_to(ADDRESS[SOCIAL]) == []
    # The reception unit gets its copy.
    assert len(world.mails_to(ADDRESS[RECEPTION])) == 1
    # Per recipient and channel: sent, with times.
    for party in view["recipients"]:
        channels = {d["channel_kind"]: d for d in party["deliveries"]}
        assert set(channels) == {"email", "telegram"}
        assert all(d["status"] == "sent" and d["sent_at"] for d in channels.values())
        assert party["acknowledged"] is None
    assert view["status"] == "notified"


async def test_the_health_centre_is_told_the_last_day_to_book(world: World) -> None:
    # Registered Wednesday 2026-11-25: five working days on is Wednesday 2 December.
    answer = await world.register(arrival())
    await world.settled(answer["id"])
    text = text_of(world.mails_to(ADDRESS[HC])[0])
    assert "onsdag 2 december 2026" in text


async def test_no_preschool_for_a_family_without_small_children(world: World) -> None:
    answer = await world.register(arrival(children=[{"age": 8}, {"age": 12}]))
    view = await world.settled(answer["id"])
    assert [r["organisation"] for r in view["recipients"]] == [HC, SCHOOL]
    assert world.mails_to(ADDRESS[PRESCHOOL]) == []
    assert world.telegram.sent_to(CHATS[PRESCHOOL])[1:] == []  # only the /start reply


async def test_social_services_are_told_of_an_unaccompanied_child(world: World) -> None:
    answer = await world.register(arrival(children=[{"age": 16}], unaccompanied=True))
    view = await world.settled(answer["id"])
    assert [r["organisation"] for r in view["recipients"]] == [HC, SCHOOL, SOCIAL]
    assert len(world.mails_to(ADDRESS[SOCIAL])) == 1
    assert "ensamkommande" in text_of(world.mails_to(ADDRESS[SOCIAL])[0]).lower()


async def test_acknowledgement_by_button_link_and_api_and_the_reception_unit_is_told(
    world: World,
) -> None:
    answer = await world.register(arrival())
    case_id = answer["id"]
    await world.settled(case_id)

    # 1. The Telegram button, pressed in the health centre's chat.
    message = next(
        c for c in world.telegram.sent_to(CHATS[HC]) if answer["reference"] in (c.text or "")
    )
    data = message.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    assert len(data.encode()) <= 64
    world.telegram.push_update(world.telegram.callback_update(CHATS[HC], data))

    # 2. The e-mail link, for the preschool: GET shows a page, only POST acknowledges.
    link = re.search(
        r"http://ankomst\.example\.se(/a/\S+)", text_of(world.mails_to(ADDRESS[PRESCHOOL])[0])
    )
    assert link is not None
    status, page = await world.call("GET", link.group(1))
    assert status == 200 and "<form" in page and 'method="post"' in page.lower()
    status, _ = await world.call("HEAD", link.group(1))
    view = await world.case(case_id)
    assert (
        next(r for r in view["recipients"] if r["organisation"] == PRESCHOOL)["acknowledged"]
        is None
    )

    async def hc_acked() -> bool:
        v = await world.case(case_id)
        return (
            next(r for r in v["recipients"] if r["organisation"] == HC)["acknowledged"] is not None
        )

    await eventually(hc_acked, what="the button press")
    answers = world.telegram.calls_to("answerCallbackQuery")
    assert answers and "Mottaget" in answers[-1].params.get("text", "")

    status, page = await world.call("POST", link.group(1))
    assert status == 200 and "Tack" in page
    status, page = await world.call("POST", link.group(1))  # again: already, nothing new
    assert status == 200

    # 3. The API, for the school.
    status, body = await world.call("POST", f"/api/v1/arrivals/{case_id}/ack", SCHOOL)
    assert status == 200 and body["acknowledged"] is True and body["already"] is False
    status, body = await world.call("POST", f"/api/v1/arrivals/{case_id}/ack", SCHOOL)
    assert status == 200 and body["already"] is True

    view = await world.settled(case_id)
    vias = {r["organisation"]: r["acknowledged"]["via"] for r in view["recipients"]}
    assert vias == {HC: "telegram", PRESCHOOL: "link", SCHOOL: "api"}
    assert view["status"] == "acknowledged"
    acks = [h for h in view["history"] if h["what"] == "acknowledged"]
    assert len(acks) == 3  # each once, however often pressed
    # When every recipient has acknowledged, the reception unit is told — once.
    reception_mails = world.mails_to(ADDRESS[RECEPTION])
    assert len(reception_mails) == 2
    assert (
        "bekräftat" in str(reception_mails[1]["Subject"]).lower()
        or "bekräftat" in text_of(reception_mails[1]).lower()
    )


async def test_a_get_on_an_ack_link_acknowledges_nothing(world: World) -> None:
    answer = await world.register(arrival())
    await world.settled(answer["id"])
    link = re.search(r"(/a/\S+)", text_of(world.mails_to(ADDRESS[HC])[0]))
    assert link is not None
    for _ in range(3):
        status, _page = await world.call("GET", link.group(1))
        assert status == 200
    view = await world.case(answer["id"])
    assert all(r["acknowledged"] is None for r in view["recipients"])


async def test_a_forged_or_cross_case_link_gets_a_clear_page(world: World) -> None:
    answer = await world.register(arrival())
    await world.settled(answer["id"])
    link = re.search(r"(/a/\S+)", text_of(world.mails_to(ADDRESS[HC])[0]))
    assert link is not None
    status, page = await world.call("POST", link.group(1)[:-3] + "AAA")
    assert status == 404 and "inte giltig" in page.lower() and "Traceback" not in page
    status, page = await world.call("GET", "/a/nonsense")
    assert status == 404


async def test_an_expired_link_is_refused(world: World) -> None:
    from datetime import timedelta

    answer = await world.register(arrival())
    await world.settled(answer["id"])
    link = re.search(r"(/a/\S+)", text_of(world.mails_to(ADDRESS[HC])[0]))
    assert link is not None
    world.clock.advance(timedelta(days=31))
    status, _page = await world.call("POST", link.group(1))
    assert status == 410
    view = await world.case(answer["id"])
    assert all(r["acknowledged"] is None for r in view["recipients"])


async def test_the_same_arrival_posted_again_is_the_same_case_and_nothing_is_sent_twice(
    world: World,
) -> None:
    first = await world.register(arrival())
    await world.settled(first["id"])
    mails, chats = len(world.smtp.messages), len(world.telegram.sent)
    status, again = await world.call("POST", "/api/v1/arrivals", RECEPTION, arrival())
    assert status == 200
    assert again["id"] == first["id"] and again["reference"] == first["reference"]
    await world.drain()
    assert (len(world.smtp.messages), len(world.telegram.sent)) == (mails, chats)


async def test_the_same_external_ref_with_other_content_is_a_conflict(world: World) -> None:
    await world.register(arrival())
    status, problem = await world.call(
        "POST", "/api/v1/arrivals", RECEPTION, arrival(arrival_date="2026-11-30")
    )
    assert status == 409
    assert problem["status"] == 409 and problem["title"]


async def test_bad_input_is_refused_naming_each_field(world: World) -> None:
    body = arrival(
        children=[{"age": 18}],
        languages=["xx9"],
        arrival_date="2026-11-01",
        details="Pappa 19800101-1234 bor här",
        surprise=1,
    )
    status, problem = await world.call("POST", "/api/v1/arrivals", RECEPTION, body)
    assert status == 422
    fields = {e["field"] for e in problem["errors"]}
    assert {"children[0].age", "languages", "arrival_date", "details", "surprise"} <= fields
    assert await world.services.redis.exists("ankomst:extref:MIG-2026-123456") == 0


async def test_unknown_municipality_and_malformed_json_are_422(world: World) -> None:
    status, problem = await world.call(
        "POST", "/api/v1/arrivals", RECEPTION, arrival(municipality="gotham")
    )
    assert status == 422 and problem["errors"][0]["field"] == "municipality"
    token = await world.token(RECEPTION)
    async with world.http.post(
        world.base + "/api/v1/arrivals",
        data=b"{not json",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    ) as response:
        assert response.status == 422
        assert response.content_type == "application/problem+json"


async def test_a_wrong_or_missing_token_is_401(world: World) -> None:
    status, problem = await world.call("POST", "/api/v1/arrivals", None, arrival())
    assert status == 401 and problem["status"] == 401
    status, _ = await world.call(
        "GET", "/api/v1/arrivals", None, headers={"Authorization": "Bearer ank_wrong"}
    )
    assert status == 401


async def test_another_municipality_is_403(world: World) -> None:
    status, problem = await world.call("POST", "/api/v1/arrivals", "berg-mottagning", arrival())
    assert status == 403 and problem["detail"]
    answer = await world.register(arrival())
    status, _ = await world.call("GET", f"/api/v1/arrivals/{answer['id']}", "berg-mottagning")
    assert status == 403
    status, _ = await world.call("POST", f"/api/v1/arrivals/{answer['id']}/ack", "berg-skola")
    assert status == 403
    status, _ = await world.call(
        "PATCH", f"/api/v1/arrivals/{answer['id']}", HC, {"arrival_date": "2026-11-30"}
    )
    assert status == 403


async def test_a_date_change_reaches_everyone_with_old_and_new_date(world: World) -> None:
    answer = await world.register(arrival())
    case_id = answer["id"]
    await world.settled(case_id)
    status, _ = await world.call("POST", f"/api/v1/arrivals/{case_id}/ack", SCHOOL)
    assert status == 200

    status, view = await world.call(
        "PATCH", f"/api/v1/arrivals/{case_id}", RECEPTION, {"arrival_date": "2026-12-01"}
    )
    assert status == 200 and view["version"] == 2
    view = await world.settled(case_id)
    for org in (HC, PRESCHOOL, SCHOOL):
        mails = world.mails_to(ADDRESS[org])
        assert len(mails) == 2
        changed = text_of(mails[1])
        assert "ÄNDRAT" in changed and "ÄNDRAT" in str(mails[1]["Subject"])
        assert "fredag 27 november 2026" in changed and "tisdag 1 december 2026" in changed
        assert mails[1]["In-Reply-To"] == mails[0]["Message-ID"]
        chat = [c for c in world.telegram.sent_to(CHATS[org]) if "ÄNDRAT" in (c.text or "")]
        assert len(chat) == 1
    # Everyone must acknowledge again, the school too.
    assert all(r["acknowledged"] is None for r in view["recipients"])
    school = next(r for r in view["recipients"] if r["organisation"] == SCHOOL)
    assert [a["version"] for a in school["acknowledgements"]] == [1]


async def test_cancellation_tells_everyone_installd(world: World) -> None:
    answer = await world.register(arrival())
    await world.settled(answer["id"])
    status, view = await world.call(
        "POST",
        f"/api/v1/arrivals/{answer['id']}/cancel",
        RECEPTION,
        {"reason": "Familjen har fått plats i annan kommun."},
    )
    assert status == 200 and view["status"] == "cancelled"
    await world.settled(answer["id"])
    for org in (HC, PRESCHOOL, SCHOOL):
        last = world.mails_to(ADDRESS[org])[-1]
        assert "INSTÄLLD" in str(last["Subject"]) and "annan kommun" in text_of(last)
    status, _ = await world.call("POST", f"/api/v1/arrivals/{answer['id']}/ack", HC)
    assert status == 409
    status, _ = await world.call(
        "PATCH", f"/api/v1/arrivals/{answer['id']}", RECEPTION, {"arrival_date": "2026-12-01"}
    )
    assert status == 409


async def test_html_in_details_arrives_escaped(world: World) -> None:
    evil = "<script>alert(1)</script> & <b>fet</b>"
    answer = await world.register(arrival(details=evil))
    await world.settled(answer["id"])
    html = html_of(world.mails_to(ADDRESS[HC])[0])
    assert "<script>" not in html and "&lt;script&gt;" in html
    for call in world.telegram.sent:
        assert "<script>" not in (call.text or "")


async def test_a_chat_not_linked_cannot_acknowledge(world: World) -> None:
    answer = await world.register(arrival())
    await world.settled(answer["id"])
    message = next(
        c for c in world.telegram.sent_to(CHATS[HC]) if answer["reference"] in (c.text or "")
    )
    data = message.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    world.telegram.push_update(world.telegram.callback_update(4242, data))
    forged = data[:-4] + "AAAA"
    world.telegram.push_update(world.telegram.callback_update(CHATS[HC], forged))

    async def answered() -> bool:
        return len(world.telegram.calls_to("answerCallbackQuery")) >= 2

    await eventually(answered, what="both button presses answered")
    texts = [c.params.get("text", "") for c in world.telegram.calls_to("answerCallbackQuery")]
    assert any("inte kopplad" in t for t in texts)
    view = await world.case(answer["id"])
    assert all(r["acknowledged"] is None for r in view["recipients"])


async def test_an_invite_code_works_once(world: World) -> None:
    code = await world.services.chats.create_invite(SCHOOL, "member", 3600)
    world.telegram.push_update(world.telegram.message_update(5001, f"/start {code}"))
    world.telegram.push_update(world.telegram.message_update(5002, f"/start {code}"))

    async def both() -> bool:
        return bool(world.telegram.sent_to(5001)) and bool(world.telegram.sent_to(5002))

    await eventually(both, what="both /start replies")
    # The two chats' updates are handled concurrently: whichever redeems first is linked, the
    # other is not.
    linked = [c for c in (5001, 5002) if await world.services.chats.link_of(c) is not None]
    assert len(linked) == 1
    [unlinked] = {5001, 5002} - set(linked)
    world.telegram.push_update(world.telegram.message_update(unlinked, "/help"))

    async def helped() -> bool:
        return len(world.telegram.sent_to(unlinked)) >= 2

    await eventually(helped, what="/help reply")


async def test_an_expired_invite_code_is_refused(world: World) -> None:
    code = await world.services.chats.create_invite(SCHOOL, "member", 3600)
    key = keys.invite(hashlib.sha256(code.encode()).hexdigest())
    redis = world.services.redis
    assert 3590 < await redis.ttl(key) <= 3600  # the code carries its expiry in the store
    # Expire it now, as Redis would after the hour: EXPIRE 0 is Redis's own expiry, no wait.
    await redis.expire(key, 0)

    world.telegram.push_update(world.telegram.message_update(5003, f"/start {code}"))

    async def replied() -> bool:
        return bool(world.telegram.sent_to(5003))

    await eventually(replied, what="/start reply")
    assert world.telegram.sent_to(5003)[0].text == INVITE_INVALID
    assert await world.services.chats.link_of(5003) is None


async def test_health_and_readiness(world: World) -> None:
    status, body = await world.call("GET", "/healthz")
    assert status == 200 and body["status"] == "ok"
    status, body = await world.call("GET", "/readyz")
    assert status == 200 and body["ready"] is True and body["redis"] is True


async def test_a_body_over_64_kib_is_413(world: World) -> None:
    status, problem = await world.call(
        "POST", "/api/v1/arrivals", RECEPTION, arrival(details="x" * 70_000)
    )
    assert status == 413 and problem["status"] == 413


async def test_a_refused_address_fails_that_delivery_only_and_the_reception_unit_is_told(
    world: World,
) -> None:
    world.smtp.reject_recipient(ADDRESS[HC], 550)
    answer = await world.register(arrival())
    view = await world.settled(answer["id"])
    hc = next(r for r in view["recipients"] if r["organisation"] == HC)
    by_kind = {d["channel_kind"]: d for d in hc["deliveries"]}
    assert by_kind["email"]["status"] == "failed" and by_kind["email"]["error"]
    assert by_kind["telegram"]["status"] == "sent"  # the other channel still reached them
    school = next(r for r in view["recipients"] if r["organisation"] == SCHOOL)
    assert all(d["status"] == "sent" for d in school["deliveries"])
    reception = world.mails_to(ADDRESS[RECEPTION])
    assert any("Hälsocentralen Lugnvik" in text_of(m) for m in reception[1:])
    notices = [c for c in world.telegram.sent_to(CHATS[RECEPTION]) if "Lugnvik" in (c.text or "")]
    assert notices


async def test_failure_reports_that_fail_themselves_are_not_reported_again(world: World) -> None:
    # Every channel of the reception unit is dead: its copy fails on both, each failure is
    # reported on the other channel, those reports fail too — and there it stops.
    world.smtp.reject_recipient(ADDRESS[RECEPTION], 550)
    world.telegram.block_chat(CHATS[RECEPTION])
    answer = await world.register(arrival())
    view = await world.settled(answer["id"])
    reception = view["reception_unit"]["deliveries"]
    reports = [d for d in reception if d["topic"] == "delivery_failed"]
    assert len(reports) == 2 and all(d["status"] == "failed" for d in reports)
    assert all(d["status"] == "sent" for p in view["recipients"] for d in p["deliveries"])
