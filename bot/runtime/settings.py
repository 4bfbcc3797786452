"""Settings from the environment (prefix ANKOMST_) and a .env file. Built once in main."""

from __future__ import annotations

import re
import secrets
import ssl
import sys
from datetime import time
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.channels.email import POOL_SIZE
from bot.domain.addresses import CONTROL, is_plain_address

# What Telegram allows as a webhook's secret_token (setWebhook).
WEBHOOK_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")


class SettingsError(Exception):
    """A setting is wrong; the message names the variable."""


class Settings(BaseSettings):
    """Everything Ankomst can be told from outside. See CONTRACT.md for the meanings."""

    model_config = SettingsConfigDict(
        env_prefix="ANKOMST_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    redis_url: str | None = None
    # Under Sentinel: how many replicas must hold a write before it is answered (Redis WAIT),
    # and how long to wait for them; 0 = do not wait (a single server).
    redis_min_replicas: int = Field(default=0, ge=0, le=16)
    redis_wait_ms: int = Field(default=1000, ge=1, le=60_000)
    data_dir: Path = Path("data")
    directory: Path = Path("deploy/directory.example.toml")
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)
    public_url: str = "http://127.0.0.1:8080"
    secret_key: SecretStr | None = None

    # The mailbox of Migrationsverket's notices (bot/pipeline/mailbox.py); unset: none watched.
    # A secret, since it carries the password: never logged, never shown in an error.
    imap_url: SecretStr | None = None
    imap_reception_unit: str | None = None  # the reception unit its notices are drafts for
    imap_ca_file: Path | None = None  # a PEM file of CA certificates trusted for its TLS
    imap_delete_processed: bool = False  # delete a notice once drafted instead of moving it
    imap_poll_seconds: float = Field(default=60.0, gt=0)  # without IDLE: how often to look

    smtp_host: str | None = None
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_tls: bool = False
    smtp_from: str = "Ankomst <ankomst@localhost.localdomain>"
    smtp_pool_size: int = Field(default=POOL_SIZE, ge=1, le=64)
    smtp_timeout: float = Field(default=30.0, gt=0)
    # A PEM file of CA certificates trusted for the relay's TLS besides the system's.
    smtp_ca_file: Path | None = None

    telegram_token: SecretStr | None = None
    telegram_api_url: str = "https://api.telegram.org"
    telegram_mode: Literal["polling", "webhook"] = "polling"
    telegram_webhook_secret: SecretStr | None = None
    telegram_timeout: float = Field(default=60.0, gt=0, le=600)

    timezone: str = "Europe/Stockholm"
    chat_details: Literal["minimal", "full"] = "minimal"
    # A chat dialogue (/ny, /andra, /stall_in, /oenighet, a booking) keeps what was typed so far
    # this long after its last step; then Redis forgets it (it is also cleared when it ends).
    chat_state_hours: float = Field(default=24.0, gt=0, le=24 * 30)

    # Time rules (CONTRACT.md "Time rules"); all in working time of `timezone`.
    office_start: time = time(8, 0)
    office_end: time = time(17, 0)
    ack_reminder_hours: float = Field(default=2.0, gt=0)
    ack_escalation_at: time = time(10, 0)
    booking_days: int = Field(default=5, ge=1)
    booking_reminder_days: int = Field(default=3, ge=1)
    same_day_alert_minutes: int = Field(default=30, ge=0)
    disagreement_days: int = Field(default=5, ge=1)
    # A registration after the same-day check time is checked this long after it was made, so
    # the notices have a moment to go out before anyone is alerted.
    same_day_grace_minutes: int = Field(default=5, ge=0)

    # Scheduler: how often it looks for due timers (real seconds), how long a claimed timer is
    # left to its claimer before another process takes it over, and from how late a firing is
    # logged as late (both in clock seconds).
    scheduler_poll_seconds: float = Field(default=1.0, gt=0)
    scheduler_lease_seconds: int = Field(default=120, ge=1)
    scheduler_late_seconds: int = Field(default=60, ge=0)
    # Readiness (/readyz): how long the store may be unreachable before the process says it is
    # not ready (a Sentinel failover takes ~10 s; every pod would drop out at once), and how
    # long a worker loop may go without a turn before it counts as stuck (real seconds).
    ready_grace_seconds: float = Field(default=30.0, ge=0)
    worker_stale_seconds: float = Field(default=300.0, gt=0)

    # Links, codes and claims
    ack_link_days: int = Field(default=30, ge=1)
    invite_hours: int = Field(default=72, ge=1)
    claim_seconds: int = Field(default=60, ge=1)
    # Status board (/dashboard): how long a sign-in link and a signed-in session last.
    dashboard_login_minutes: int = Field(default=15, ge=1, le=24 * 60)
    dashboard_session_hours: float = Field(default=8.0, gt=0, le=24 * 30)
    send_attempts: int = Field(default=6, ge=1)
    retry_base_seconds: float = Field(default=1.0, gt=0)
    retry_cap_seconds: float = Field(default=60.0, gt=0)
    # A delivery still failing transiently is given up (failed, reported, dead-lettered) after
    # this many attempts (the relay's own failures not counted) or at this age, whichever comes
    # first. Two hours: a notice registered during office hours is then reported as failed while
    # the reception unit can still reach the recipient by phone the same working day.
    delivery_max_attempts: int = Field(default=30, ge=1)
    delivery_max_hours: float = Field(default=2.0, gt=0)

    # Privacy: personal fields are erased this many days after a case closed; the sweep that
    # looks for such cases runs this often (real seconds).
    retention_days: int = Field(default=90, ge=1)
    retention_sweep_seconds: float = Field(default=3600.0, gt=0)
    # The events, outbox and intake streams are trimmed to what every consumer group has
    # finished this often (real seconds), between the sweeps (bot/store/trim.py).
    stream_trim_seconds: float = Field(default=5.0, gt=0)
    # Logs: one JSON object per line (json) or readable lines for a terminal (console).
    log_format: Literal["json", "console"] = "json"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        assert value is not None
        if not value.startswith(("redis://", "rediss://", "unix://", "redis+sentinel://")):
            raise ValueError("must start with redis://, rediss://, unix:// or redis+sentinel://")
        return value

    @field_validator("public_url", "telegram_api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("smtp_from")
    @classmethod
    def _from_address(cls, value: str) -> str:
        address = value.rsplit("<", 1)[-1].rstrip(">").strip()
        if CONTROL.search(value) or not is_plain_address(address):
            raise ValueError("must be an e-mail address, optionally with a display name")
        return value

    @field_validator("smtp_ca_file", mode="before")
    @classmethod
    def _ca_file(cls, value: object) -> object:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        try:
            ssl.create_default_context(cafile=str(value))
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"not a readable PEM file of CA certificates ({exc})") from None
        return value

    @field_validator("smtp_host", "smtp_username")
    @classmethod
    def _empty_is_unset(cls, value: str | None) -> str | None:
        return value or None

    @field_validator(
        "secret_key", "smtp_password", "telegram_token", "telegram_webhook_secret", mode="before"
    )
    @classmethod
    def _empty_secret_is_unset(cls, value: object) -> object:
        # `ANKOMST_SECRET_KEY=` in an env file must not mean "sign with the empty key".
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        return value

    @field_validator("telegram_webhook_secret")
    @classmethod
    def _webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        # Telegram accepts 1-256 characters of A-Z, a-z, 0-9, _ and - as a webhook's
        # secret_token; anything else is refused by setWebhook, so refuse it at start (the
        # message never repeats the value: it is a secret).
        if value is not None and not WEBHOOK_SECRET.fullmatch(value.get_secret_value()):
            raise ValueError("must be 1-256 characters of A-Z, a-z, 0-9, _ and - (Telegram's rule)")
        return value

    @field_validator("secret_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError(
                "must be at least 16 characters (generate one with secrets.token_urlsafe)"
            )
        return value

    @field_validator("imap_url", mode="before")
    @classmethod
    def _imap_url(cls, value: object) -> object:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        from bot.pipeline.mailbox import MailboxConfig, MailboxSettingError

        text = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        try:
            MailboxConfig.from_url(text)
        except MailboxSettingError as exc:
            raise ValueError(str(exc)) from None  # the reason only: the URL holds a password
        return value

    @field_validator("imap_ca_file", mode="before")
    @classmethod
    def _imap_ca_file(cls, value: object) -> object:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        try:
            ssl.create_default_context(cafile=str(value))
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"not a readable PEM file of CA certificates ({exc})") from None
        return value

    @field_validator("imap_reception_unit", mode="before")
    @classmethod
    def _imap_unit(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _mailbox_owner(self) -> Settings:
        if self.imap_url is not None and not self.imap_reception_unit:
            raise ValueError(
                "ANKOMST_IMAP_RECEPTION_UNIT must name the reception unit that owns "
                "ANKOMST_IMAP_URL"
            )
        return self

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.telegram_mode == "webhook" and self.telegram_webhook_secret is None:
            raise ValueError(
                "ANKOMST_TELEGRAM_WEBHOOK_SECRET is required when ANKOMST_TELEGRAM_MODE=webhook"
            )
        if self.smtp_tls and self.smtp_starttls:
            raise ValueError("ANKOMST_SMTP_TLS and ANKOMST_SMTP_STARTTLS cannot both be on")
        if self.office_end <= self.office_start:
            raise ValueError("ANKOMST_OFFICE_END must be after ANKOMST_OFFICE_START")
        if self.booking_reminder_days >= self.booking_days:
            raise ValueError("ANKOMST_BOOKING_REMINDER_DAYS must be less than ANKOMST_BOOKING_DAYS")
        if self.chat_state_hours > self.retention_days * 24:
            # A dialogue's typed text must be gone before the case it was about is erased.
            raise ValueError("ANKOMST_CHAT_STATE_HOURS must not be longer than the retention time")
        return self

    @model_validator(mode="after")
    def _public_url_follows_http(self) -> Settings:
        # Unset, the links in mails point where this service listens: with only
        # ANKOMST_HTTP_PORT changed they must not still say :8080. A wildcard host is no
        # address to link to, so those links say 127.0.0.1; port 0 (any free port) keeps 8080.
        if "public_url" not in self.model_fields_set and self.http_port != 0:
            host = self.http_host
            if host in ("", "0.0.0.0", "::", "[::]"):  # noqa: S104 - not a bind, a link's host
                host = "127.0.0.1"
            elif ":" in host and not host.startswith("["):
                host = f"[{host}]"  # an IPv6 address in a URL
            self.public_url = f"http://{host}:{self.http_port}"
        return self

    @property
    def zone(self) -> ZoneInfo:
        """The time zone deadlines are computed in."""
        return ZoneInfo(self.timezone)

    @property
    def mail_dir(self) -> Path:
        """Where the embedded SMTP server keeps captured mail (Maildir)."""
        return self.data_dir / "mail"

    @property
    def valkey_dir(self) -> Path:
        """Where the embedded Valkey keeps its data."""
        return self.data_dir / "valkey"

    def secret(self) -> bytes:
        """The signing key: from the setting, else generated once into DATA_DIR/secret."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value().encode()
        path = self.data_dir / "secret"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
        return path.read_text().strip().encode()


def describe(error: ValidationError) -> str:
    """One line naming the variable(s) at fault, for the start-up error."""
    parts = []
    for item in error.errors():
        loc = item.get("loc") or ()
        message = str(item.get("msg", "invalid")).removeprefix("Value error, ")
        if loc:
            parts.append(f"ANKOMST_{str(loc[0]).upper()}: {message}")
        else:
            parts.append(message)
    return "; ".join(parts)


def load_settings(**overrides: object) -> Settings:
    """Build the settings from the environment; a bad value raises SettingsError naming it."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError(describe(exc)) from None


def load_or_exit() -> Settings:
    """For the command line: bad settings print one line and exit with status 2."""
    try:
        return load_settings()
    except SettingsError as exc:
        print(f"ankomst: invalid setting: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
