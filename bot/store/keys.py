"""Every Redis key and stream name Ankomst uses, in one place.

Nothing else spells a key: modules call these functions (or read these constants), so a grep for
a key's shape finds its one definition here.
"""

from __future__ import annotations

PREFIX = "ankomst"

# Streams and their consumer groups
EVENTS = f"{PREFIX}:events"  # domain events: registered, changed, cancelled, acknowledged, ...
FANOUT_GROUP = "fanout"
DEADLINES_GROUP = "deadlines"  # the deadline watch reads the same events in a group of its own
OUTBOX_EMAIL = f"{PREFIX}:outbox:email"  # one entry per e-mail delivery to make
OUTBOX_TELEGRAM = f"{PREFIX}:outbox:telegram"  # one entry per chat delivery to make
SENDER_GROUP = "senders"


def stream_failures(stream: str) -> str:
    """Hash entry id -> how many times handling it has failed (a consumer's poison count).
    A field goes when its entry is acknowledged or dead-lettered; the hash expires
    `FAILURES_TTL` seconds after its last failure, so nothing is left behind for good."""
    return f"{PREFIX}:failures:{stream}"


FAILURES_TTL = 7 * 86400  # bookkeeping: long beyond any entry's retries (claim time × 5)


DEAD_LETTER = f"{PREFIX}:deadletter"
# Written (with a TTL) only so that a WAIT after it covers every earlier write (durability.py)
DURABILITY_PROBE = f"{PREFIX}:durability:probe"
INTAKE = f"{PREFIX}:intake"
INTAKE_GROUP = "intake"  # the intake consumers' group (bot.usecases.intake)
INTAKE_REJECTED = f"{PREFIX}:intake:rejected"

# Cases
OPEN_CASES = f"{PREFIX}:cases:open"
ALL_CASES = f"{PREFIX}:cases:all"


def case(case_id: str) -> str:
    """Hash with the case's current state."""
    return f"{PREFIX}:case:{case_id}"


def case_versions(case_id: str) -> str:
    """Hash version -> JSON snapshot of what that version said."""
    return f"{PREFIX}:case:{case_id}:versions"


def case_delivery_ids(case_id: str) -> str:
    """Hash: the deliveries made for a case as fields, each its id without the leading
    "{case_id}:" (every delivery id begins with its case's), valued its record packed
    (bot/domain/delivery.py `pack_items`), or "" for one with a hash of its own (`delivery`,
    the older layout); the field "@" holds what the packed records share (their e-mails'
    sender domain). bot/store/deliveries.py `case_delivery_ids` gives the full ids back. Its
    values are kept short, so that Redis 7.0 keeps it a listpack: a case's 8 deliveries took
    886 bytes (MEMORY USAGE) as a set of full ids, 408 as this hash valued "", and some 2.8 KB
    more as a hash per delivery."""
    return f"{PREFIX}:case:{case_id}:delivery_ids"


def case_deliveries(case_id: str) -> str:
    """The older layout of `case_delivery_ids`: a set of full delivery ids. Read, never added
    to (bot/store/deliveries.py `case_delivery_ids`)."""
    return f"{PREFIX}:case:{case_id}:deliveries"


def case_acks(case_id: str) -> str:
    """Hash "{version}:{org}" -> JSON acknowledgement."""
    return f"{PREFIX}:case:{case_id}:acks"


def ack_resend(case_id: str, field: str, sender: str) -> str:
    """For a few minutes after an acknowledgement ("{version}:{org}" `field`) made through a
    board session: that session (`sender`, a hash of its id) made it, so the same form sent
    again is answered as recorded, not as another person's (bot/usecases/cases.py)."""
    return f"{PREFIX}:case:{case_id}:ack-resend:{field}:{sender}"


def case_history(case_id: str) -> str:
    """List of JSON history entries (who, what, when, through which channel)."""
    return f"{PREFIX}:case:{case_id}:history"


def case_reached(case_id: str) -> str:
    """Hash org (and "{version}:{org}") -> when first sent an arrival message."""
    return f"{PREFIX}:case:{case_id}:reached"


def case_markers(case_id: str) -> str:
    """Hash of once-only markers (e.g. "all_acked:{version}")."""
    return f"{PREFIX}:case:{case_id}:markers"


def booking_informed_marker(org_id: str) -> str:
    """Field of `case_markers`: when the health centre `org_id` was first told (ISO)."""
    return f"booking_informed:{org_id}"


def booking_reported_marker(org_id: str) -> str:
    """Field of `case_markers`: when the health centre `org_id` reported a booking (ISO)."""
    return f"booking_reported:{org_id}"


def municipality_case_ids(municipality: str) -> str:
    """Sorted set: the ids of the cases in a municipality, scored by when registered (epoch
    seconds). A sorted set, not a set, because Redis 7.0 keeps a small sorted set of strings a
    listpack and a set of strings never: one case's id took 104 bytes (MEMORY USAGE) where the
    set took 232, and most municipalities and organisations have few cases."""
    return f"{PREFIX}:cases:municipality:{municipality}:ids"


def organisation_case_ids(org_id: str) -> str:
    """Sorted set: the ids of the cases an organisation is on, scored by when registered
    (epoch seconds); a sorted set for the reason `municipality_case_ids` gives."""
    return f"{PREFIX}:org:{org_id}:case_ids"


def municipality_cases(municipality: str) -> str:
    """The older layout of `municipality_case_ids`: a set of case ids. Read, never added to
    (bot/store/cases.py `CaseStore.ids`)."""
    return f"{PREFIX}:cases:municipality:{municipality}"


def organisation_cases(org_id: str) -> str:
    """The older layout of `organisation_case_ids`: a set of case ids. Read, never added to."""
    return f"{PREFIX}:org:{org_id}:cases"


def external_ref(ref: str) -> str:
    """String: case id registered for this external reference (idempotency key)."""
    return f"{PREFIX}:extref:{ref}"


def reference_sequence(code: str, year: int) -> str:
    """Counter for human case references (OSD-2026-0001)."""
    return f"{PREFIX}:refseq:{code}:{year}"


def case_by_reference(reference: str) -> str:
    """String: case id for a human reference."""
    return f"{PREFIX}:ref:{reference}"


# Disagreements (routine §7)
OPEN_DISAGREEMENTS = f"{PREFIX}:disagreements:open"  # set of disagreement ids not yet resolved


def disagreement(disagreement_id: str) -> str:
    """Hash of one disagreement."""
    return f"{PREFIX}:disagreement:{disagreement_id}"


def case_disagreements(case_id: str) -> str:
    """Set of a case's disagreement ids."""
    return f"{PREFIX}:case:{case_id}:disagreements"


# Deliveries


def delivery(delivery_id: str) -> str:
    """Hash: one delivery's record, as the older layouts kept it (still read and written);
    a delivery made now is packed in its case's index instead (`case_delivery_ids`)."""
    return f"{PREFIX}:delivery:{delivery_id}"


def delivery_claim(delivery_id: str) -> str:
    """Idempotency claim taken (SET NX PX) before a delivery is sent."""
    return f"{PREFIX}:claim:{delivery_id}"


# Access


def api_token(token_hash: str) -> str:
    """Hash for an API token, keyed by the token's SHA-256 (the token itself is never stored):
    org, role, id (public), label, created_at, expires_at, last_used_at, revoked_at. Kept after
    revocation (no TTL), so listings and the audit trail can still name the token."""
    return f"{PREFIX}:apitoken:{token_hash}"


API_TOKEN_PATTERN = f"{PREFIX}:apitoken:*"  # SCAN match for tokens made before the index
API_TOKENS = f"{PREFIX}:apitokens"  # hash: a token's public id -> its SHA-256 (list, revoke)


def invite(code_hash: str) -> str:
    """Hash for a one-time chat invite code (by hash), with a TTL."""
    return f"{PREFIX}:invite:{code_hash}"


def chat(chat_id: int) -> str:
    """Hash: which organisation (and role) a Telegram chat is linked to."""
    return f"{PREFIX}:chat:{chat_id}"


def organisation_chats(org_id: str) -> str:
    """Set of Telegram chat ids linked to an organisation."""
    return f"{PREFIX}:org:{org_id}:chats"


def dashboard_login(token_hash: str) -> str:
    """String: a one-time status-board sign-in token (by hash) -> JSON claim, with a TTL."""
    return f"{PREFIX}:dashboard:login:{token_hash}"


def dashboard_session(session_hash: str) -> str:
    """Hash: a signed-in status-board session (by hash of its id), with a TTL."""
    return f"{PREFIX}:dashboard:session:{session_hash}"


def dashboard_login_mail(address_hash: str) -> str:
    """String with a short TTL: a sign-in link was just mailed to this address (by hash)."""
    return f"{PREFIX}:dashboard:mailed:{address_hash}"


def dashboard_login_attempts(kind: str, subject_hash: str) -> str:
    """Counter with a TTL: sign-in-by-mail requests in the current window, per address
    (`kind` "address") or per client IP (`kind` "client"), each by hash."""
    return f"{PREFIX}:dashboard:attempts:{kind}:{subject_hash}"


def notice_draft(draft_id: str) -> str:
    """Hash field -> value: a draft arrival (from a Migrationsverket notice) that the
    registration form at /dashboard/ny?draft=ID is filled in from."""
    return f"{PREFIX}:draft:{draft_id}"


def notice_drafts(org_id: str) -> str:
    """Sorted set: the drafts of a reception unit, by when their notice came (epoch s)."""
    return f"{PREFIX}:drafts:{org_id}"


def notice_draft_history(draft_id: str) -> str:
    """List of JSON entries: who made, confirmed or discarded a draft, when, and why."""
    return f"{PREFIX}:draft:{draft_id}:history"


# Sorted set: every notice draft still stored, by the moment its retention time counts from
# (epoch s): when it was confirmed or discarded, else when its notice came. The privacy sweep
# deletes a draft (hash, history, unit index) ANKOMST_RETENTION_DAYS after that moment.
NOTICE_DRAFT_RETENTION = f"{PREFIX}:draft-retention"


def mailbox_claim(mailbox: str, token: str) -> str:
    """String with a TTL: the `serve` process now taking a mailbox message (`token` is
    "uid:{uidvalidity}:{uid}" or "mid:{hash of the Message-ID}"); gone after `MAILBOX_CLAIM_TTL`
    if that process dies, so another takes the message."""
    return f"{PREFIX}:mailbox:{mailbox}:claim:{token}"


def mailbox_done(mailbox: str, token: str) -> str:
    """String with a TTL: a mailbox message already made into a draft (by UID or Message-ID
    hash), so no process takes it again while it is still in the folder."""
    return f"{PREFIX}:mailbox:{mailbox}:done:{token}"


MAILBOX_CLAIM_TTL = 300  # bookkeeping: longer than reading and storing one message
MAILBOX_DONE_TTL = 30 * 86400  # bookkeeping: a message left in the inbox is not taken again


# Telegram chat dialogues (aiogram's FSM storage, built in handlers/telegram): under the
# service's prefix, "ankomst:fsm:<bot>:<chat>:<user>:state|data|lock", each with the TTL of
# ANKOMST_CHAT_STATE_HOURS (the lock: aiogram's own timeout).
FSM_PREFIX = f"{PREFIX}:fsm"

# Telegram rate limiting
TELEGRAM_SENT = f"{PREFIX}:tg:sent"  # sorted set: the bot's recent sends by answer time (ms)


def telegram_chat_window(chat_id: int) -> str:
    """Sorted set of a chat's recent sends by answer time, ms, or, while in flight, by the
    time taken plus `IN_FLIGHT_MS` (bot/channels/telegram.py): a group's 20/min window, and
    for any chat the message in flight that holds its next one."""
    return f"{PREFIX}:tg:window:{chat_id}"


def telegram_chat_done(chat_id: int) -> str:
    """When the last message to this chat was answered (ms, Redis time)."""
    return f"{PREFIX}:tg:done:{chat_id}"


def telegram_chat_next(chat_id: int) -> str:
    """Earliest time (ms) the next message may go to this chat."""
    return f"{PREFIX}:tg:next:{chat_id}"


# Scheduler
TIMERS = f"{PREFIX}:timers"  # sorted set: timer id by due time (epoch seconds)

# Open deadlines, kept as things happen so /metrics counts "overdue now" with one ZCOUNT each
# (bot/runtime/metrics.py): member "{case}|{org}", score = when it is late (epoch seconds).
ACK_DEADLINES = f"{PREFIX}:deadlines:ack"  # recipients that have not acknowledged the version
BOOKING_DEADLINES = f"{PREFIX}:deadlines:booking"  # health centres told, no booking reported
DEADLINES_INDEXED = f"{PREFIX}:deadlines:indexed"  # string: the sets were built from open cases


def deadline_member(case_id: str, org_id: str) -> str:
    """Member of ACK_DEADLINES / BOOKING_DEADLINES for one organisation on one case."""
    return f"{case_id}|{org_id}"


def escalation_digest(org_id: str, stamp: int) -> str:
    """Hash: the escalations one organisation is told of at one instant (epoch seconds), field
    "{kind}|{case}|{org}|{version}" -> JSON; field "sent" once the digest went out
    (bot/pipeline/deadlines.py). Bookkeeping: expires `DIGEST_TTL` after that instant."""
    return f"{PREFIX}:digest:{org_id}:{stamp}"


DIGEST_TTL = 14 * 86400  # bookkeeping: well past a digest's instant and any late firing


def timer(timer_id: str) -> str:
    """Hash: a timer of its own (state, due time, payload), for one whose id does not say its
    case or too long to pack, and every timer of the older layouts (bot/store/timers.py)."""
    return f"{PREFIX}:timer:{timer_id}"


def case_timers(case_id: str) -> str:
    """Hash: the timers made for a case (pending, fired or cancelled), each id a field valued
    the timer packed (bot/store/timers.py `pack`), or "" for one with a hash of its own
    (`timer`). Its values are kept short, so that Redis 7.0 keeps it a listpack: ten timers
    took 2.6 KB as hashes of their own and 0.6 KB more in this index (ids only)."""
    return f"{PREFIX}:case:{case_id}:timer_ids"


def case_timers_set(case_id: str) -> str:
    """The older layout of `case_timers`: a set of timer ids. Read and cleared, never added
    to (bot/store/timers.py `case_timer_ids`)."""
    return f"{PREFIX}:case:{case_id}:timers"


# Follow-up statistics, privacy and audit (kept when personal data are erased)
STATS_CASES = f"{PREFIX}:stats:cases"  # sorted set: case id by registration time (epoch s)
ERASED_CASES = f"{PREFIX}:cases:erased"  # set: cases whose personal fields are erased
# Stream: every read of a case and every refused read (who, when, through what). A record that
# is KEPT: it has no consumer group, is never trimmed (no MAXLEN/XTRIM) and retention leaves it.
AUDIT = f"{PREFIX}:audit"


def case_personal_entries(case_id: str) -> str:
    """Set of `EVENTS` entry ids that carry personal fields of the case, noted when the fan-out
    reads them, so erasure deletes them without reading the stream's history."""
    return f"{PREFIX}:case:{case_id}:personal_entries"


def case_stats(case_id: str) -> str:
    """Hash: the anonymous statistics record of a case (no personal fields), frozen at erasure."""
    return f"{PREFIX}:stats:case:{case_id}"
