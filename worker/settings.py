"""The one settings object: every knob comes from `SUBACCOUNT_WORKER_*` environment variables.

Units are in the names (`_s`, `_ms`). Secrets are `SecretStr`, so printing the settings never
shows them. `load_settings()` turns a validation failure into one readable line per variable.
"""

from __future__ import annotations

import ipaddress
import re
from enum import StrEnum
from functools import lru_cache
from typing import Annotated
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from handlers.limits import DEFAULT_MAX_CREDITS_PER_GRANT
from worker.errors import ConfigError
from worker.url_policy import UrlPolicy, masked

ENV_PREFIX = "SUBACCOUNT_WORKER_"
REDIS_SCHEMES = ("redis", "rediss", "unix")


class ApiSurface(StrEnum):
    """Which public Subaccount API the client speaks."""

    V5 = "v5"
    V6 = "v6"


class LogFormat(StrEnum):
    AUTO = "auto"  # pretty on a terminal, JSON otherwise
    JSON = "json"
    CONSOLE = "console"


class RateLimitScope(StrEnum):
    PROCESS = "process"  # one token bucket per process
    REDIS = "redis"  # one bucket shared by every process through Redis


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


CsvSecrets = Annotated[list[SecretStr], NoDecode]
CONSOLE_ROLES = ("viewer", "operator", "admin")


class Settings(BaseSettings):
    """Configuration of every subaccount-worker process (worker, ingress, CLI, sandbox)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    # --- Subaccount API -------------------------------------------------------------------
    api_base_url: str = Field(
        "", description="Base URL of the surface; no default: `worker` refuses to start without"
    )
    api_allow_insecure_http: bool = Field(
        False, description="Allow http:// to a host other than loopback (the key goes in clear)"
    )
    api_surface: ApiSurface = ApiSurface.V6
    api_key: SecretStr = Field(SecretStr(""), description="API key of the master account")
    api_connect_timeout_s: float = Field(3.0, gt=0)
    api_read_timeout_s: float = Field(10.0, gt=0)
    api_write_timeout_s: float = Field(5.0, gt=0)
    api_pool_timeout_s: float = Field(5.0, gt=0)
    api_rate_limit_rps: float = Field(0.0, ge=0, description="0 disables client-side limiting")
    api_rate_limit_burst: int = Field(0, ge=0, description="0 = one second of rate")
    api_rate_limit_scope: RateLimitScope = RateLimitScope.REDIS
    api_settle_s: float = Field(
        120.0,
        ge=0,
        description="After this long since it was sent, the API can no longer apply a request"
        " (a call with no answer is in doubt until then; README 'The in-doubt window')",
    )

    # --- Redis and the queue --------------------------------------------------------------
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="redis://user:password@host:port/db, rediss:// for TLS (ssl_* in the query)",
    )
    redis_read_url: str = Field(
        "",
        description="A read-only ACL user's URL for console viewer sessions and read-only CLI"
        " commands (deploy/redis: saw-reader); '' = REDIS_URL",
    )
    broker_redis_db: int = Field(
        1,
        ge=0,
        description="Database of Dramatiq's keys on REDIS_URL's server: its own, so the broker's"
        " maintenance (KEYS) never scans the ledger; REDIS_URL's database = one shared keyspace",
    )
    key_prefix: str = Field("saw", min_length=1, description="Prefix of every Redis key we own")
    # Durable before it matters (worker/durability.py): what a grant's in-progress record and an
    # accepted event must reach before the grant is sent or the event acknowledged.
    redis_durability: str = Field(
        "auto",
        description="none, local (WAITAOF), replicas:N (WAIT), local+replicas:N; auto = local"
        " where the server has WAITAOF and AOF, else none (said at start)",
    )
    redis_durability_timeout_ms: int = Field(
        2000, ge=10, description="Longest wait for it; past it the write counts as not kept"
    )
    # Redis Sentinel (worker/redis_access.py): the master is found through these; the user,
    # password, database and TLS options still come from `redis_url` (its host is ignored).
    redis_sentinels: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated host:port of the sentinels"
    )
    redis_sentinel_master: str = Field("", description="The master's name in Sentinel")
    redis_sentinel_password: SecretStr = Field(
        SecretStr(""), description="The sentinels' own password (requirepass), if they have one"
    )
    queue_name: str = "subaccount-events"
    heartbeat_timeout_ms: int = Field(60_000, ge=1000)
    maintenance_chance: int = Field(1000, ge=0, le=1_000_000)
    dead_message_ttl_ms: int = Field(7 * 86_400_000, ge=1000)

    # --- Worker behaviour -------------------------------------------------------------------
    worker_processes: int = Field(1, ge=1)
    worker_threads: int = Field(8, ge=1)
    worker_shutdown_timeout_ms: int = Field(
        50_000, ge=1000, description="How long SIGTERM waits for in-flight messages"
    )
    lock_ttl_ms: int = Field(
        90_000, ge=100, description="Per-client lease, renewed before every step"
    )
    lock_busy_delay_ms: int = Field(200, ge=1)
    # An event's own transient failures: 15 attempts over ~30 min (at most ~1 h) with full
    # jitter; outages are the circuit's (below). Why these numbers: README "Retries".
    retry_max_attempts: int = Field(15, ge=1)
    retry_max_age_s: float = Field(86_400.0, gt=0)
    retry_min_backoff_ms: int = Field(1000, ge=1)
    retry_max_backoff_ms: int = Field(600_000, ge=1)
    unknown_client_wait_s: float = Field(3600.0, ge=0)
    unknown_client_retry_ms: int = Field(5_000, ge=1)
    max_deliveries: int = Field(5, ge=1, description="Deliveries without outcome = poison")
    ledger_ttl_s: int = Field(30 * 86_400, ge=1, description="How long done steps are kept")
    outcome_stream_maxlen: int = Field(100_000, ge=100)
    timeline_maxlen: int = Field(200, ge=1, description="Outcomes kept per client timeline")
    max_credits_per_grant: int = Field(
        DEFAULT_MAX_CREDITS_PER_GRANT,
        ge=1,
        description="More credits in one invoice, onboarding or recurring amount: refused",
    )

    # --- API circuit breaker: an outage holds events instead of spending attempts --
    circuit_enabled: bool = Field(
        True, description="Open a shared circuit on systemic API failures (false: retries only)"
    )
    circuit_failure_threshold: int = Field(
        10, ge=1, description="Systemic failures of one operation within the window to open it"
    )
    circuit_min_clients: int = Field(
        3, ge=1, description="...from at least this many clients (one broken client never opens)"
    )
    circuit_failure_ratio: float = Field(
        0.5, gt=0, le=1, description="...while this share of a process's recent calls fail"
    )
    circuit_window_s: float = Field(30.0, gt=0, description="Window the failures are counted in")
    circuit_probe_interval_s: float = Field(
        5.0, gt=0, description="While open: one probe call per operation per interval"
    )

    # --- Ingress --------------------------------------------------------------------------
    ingress_tokens: CsvSecrets = Field(default_factory=list)
    stripe_webhook_secret: SecretStr = SecretStr("")
    stripe_tolerance_s: int = Field(300, ge=1)
    crm_webhook_secrets: CsvSecrets = Field(default_factory=list)
    ingress_max_body_bytes: int = Field(256 * 1024, ge=1024)
    stripe_price_credits: dict[str, int] = Field(default_factory=dict)
    ingress_header_timeout_s: float = Field(
        10.0, gt=0, description="From connecting to a complete request head, else 408"
    )
    ingress_body_timeout_s: float = Field(10.0, gt=0, description="To read a body, else 408")
    ingress_keep_alive_s: int = Field(5, ge=1, description="Idle time between requests")
    ingress_max_connections: int = Field(
        1000, ge=1, description="Connections at once; beyond, requests get 503"
    )
    ingress_metrics_port: int = Field(
        0, ge=0, le=65535, description="/metrics on its own port (deploy/: 9193); 0 = public port"
    )
    ingress_openapi: bool = Field(False, description="Serve /openapi.json on the public port")

    # --- Metrics --------------------------------------------------------------------------
    tracing: bool = Field(
        False,
        description="Record OpenTelemetry traces (needs the otel extra; OTEL_* set the exporter)",
    )
    metrics_host: str = "0.0.0.0"  # noqa: S104 - scraped from outside the container
    metrics_port: int = Field(9191, ge=0, le=65535, description="0 disables /metrics")
    metrics_dir: str = Field("", description="Per-run multiprocess dir; '' = a temp dir")

    # --- Console (`subaccount-worker console`) ----------------------------------------------
    # Users as comma-separated `name:role:token` (role: viewer, operator or admin); the tokens
    # are secrets. A trusted header set by an auth proxy (e.g. `X-Forwarded-User`) may replace or
    # add to them; its users get a role from `console_trusted_roles` (`name:role`, `*` = anyone).
    # The console refuses to start with neither. Sessions are signed with `console_secret`
    # (HMAC-SHA256; '' = a random key per process, so sessions end when it restarts).
    console_tokens: CsvSecrets = Field(default_factory=list)
    console_secret: SecretStr = SecretStr("")
    console_session_ttl_s: int = Field(8 * 3600, ge=60, description="Login session lifetime")
    console_trusted_user_header: str = ""
    console_trusted_roles: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # The trusted header is believed only from these proxy addresses (CIDRs; required with the
    # header; X-Forwarded-For/-Proto are read from them too, else from loopback), and, when a
    # proxy secret is set, only with that secret in `console_proxy_secret_header`.
    console_trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    console_proxy_secret_header: str = "X-Console-Proxy-Secret"  # noqa: S105 - a name
    console_proxy_secret: SecretStr = SecretStr("")
    console_token_login_with_header: bool = Field(
        False, description="Keep token login beside the trusted header (off: the proxy only)"
    )
    console_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["localhost", "127.0.0.1", "::1"],
        description="Host names the console answers to ('.example.com': its subdomains too)",
    )
    console_session_idle_s: int = Field(1800, ge=60, description="A session unused this long ends")
    console_login_free_attempts: int = Field(
        3, ge=1, description="Failed logins per address or user before the delay starts"
    )
    console_login_max_delay_s: int = Field(900, ge=1, description="Longest wait after failures")
    console_login_window_s: int = Field(3600, ge=60, description="Failures are forgotten after")

    # --- Credits: monitor, low-credit rule, notifications ----------------------
    monitor_host: str = "0.0.0.0"  # noqa: S104 - scraped from outside the container
    monitor_port: int = Field(9192, ge=0, le=65535, description="/metrics and /healthz; 0 = off")
    monitor_interval_s: float = Field(300.0, gt=0, description="Time between two scans")
    monitor_page_size: int = Field(100, ge=1, le=1000, description="Subaccounts per list call")
    monitor_rate_share: float = Field(
        0.5, gt=0, le=1, description="Largest share of the API rate limit the monitor may use"
    )
    monitor_concurrency: int = Field(4, ge=1, le=64, description="Credit reads in flight")
    monitor_lease_ttl_ms: int = Field(30_000, ge=1000, description="Leader lease of the monitor")
    monitor_history_maxlen: int = Field(288, ge=2, description="Snapshots kept per subaccount")
    monitor_rate_window_s: float = Field(
        86_400.0, gt=0, description="History window the consumption rate is computed over"
    )
    monitor_runway_min_history_s: float = Field(
        6 * 3600.0,
        ge=0,
        description="Runway only from history spanning at least this long (else: unknown)",
    )
    monitor_runway_min_samples: int = Field(
        4, ge=2, description="...and holding at least this many readings"
    )
    credits_digest_period_s: float = Field(
        3600.0, gt=0, description="One credits_digest notification listing every low client"
    )
    monitor_balance_gauges: bool = Field(
        False, description="Export one balance gauge per subaccount (cardinality!)"
    )
    credits_warn_balance: int = Field(1000, ge=0, description="Warn below this balance")
    credits_critical_balance: int = Field(100, ge=0, description="Critical below this balance")
    credits_warn_runway_s: float = Field(3 * 86_400.0, ge=0, description="Warn below this runway")
    credits_critical_runway_s: float = Field(86_400.0, ge=0, description="Critical below this")
    credits_clear_ratio: float = Field(
        1.5, ge=1, description="An alert clears only above warn thresholds x this ratio"
    )
    credits_clear_after_s: float = Field(
        900.0, ge=0, description="...and only after staying above them this long"
    )
    credits_alert_period_s: float = Field(
        86_400.0, ge=0, description="At most one credits_low notification per client per period"
    )
    credits_history_maxlen: int = Field(100, ge=1, description="Alert changes kept per client")
    notify_url: str = Field("", description="Webhook for credit notifications; '' = record only")
    notify_secret: SecretStr = Field(SecretStr(""), description="Standard Webhooks secret")
    # The notification URL is https:// only, without user:password@, and never to a private,
    # loopback, link-local or metadata address unless allowed here (worker/url_policy.py).
    notify_allow_http_loopback: bool = Field(
        False, description="Allow http:// (and loopback addresses) for a local receiver"
    )
    notify_allowed_cidrs: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Inward ranges the notification URL may reach"
    )
    notify_queue_name: str = "credit-notifications"
    notify_timeout_s: float = Field(5.0, gt=0)
    notify_max_retries: int = Field(10, ge=0)
    notify_min_backoff_ms: int = Field(1000, ge=1)
    notify_max_backoff_ms: int = Field(600_000, ge=1)
    notify_stream_maxlen: int = Field(10_000, ge=10, description="Notifications kept in Redis")

    # --- Logging --------------------------------------------------------------------------
    log_format: LogFormat = LogFormat.AUTO
    log_level: str = "INFO"

    _split_tokens = field_validator(
        "ingress_tokens",
        "crm_webhook_secrets",
        "console_tokens",
        "console_trusted_roles",
        "redis_sentinels",
        mode="before",
    )(_split_csv)

    _split_console_lists = field_validator(
        "console_trusted_proxies", "console_allowed_hosts", "notify_allowed_cidrs", mode="before"
    )(_split_csv)

    @field_validator("console_trusted_proxies", "notify_allowed_cidrs")
    @classmethod
    def _proxy_networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an address or CIDR (10.0.0.0/8)") from None
        return value

    @field_validator("console_tokens")
    @classmethod
    def _console_users(cls, value: list[SecretStr]) -> list[SecretStr]:
        for n, entry in enumerate(value, 1):
            name, role, token = ([*entry.get_secret_value().split(":", 2), "", ""])[:3]
            if not name or role not in CONSOLE_ROLES or not token:
                # Never echo the entry: it holds a token.
                raise ValueError(f"entry {n} is not name:role:token with role in {CONSOLE_ROLES}")
        return value

    @field_validator("console_trusted_roles")
    @classmethod
    def _trusted_roles(cls, value: list[str]) -> list[str]:
        for entry in value:
            name, _, role = entry.rpartition(":")
            if not name or role not in CONSOLE_ROLES:
                raise ValueError(f"{entry!r} is not name:role with role in {CONSOLE_ROLES}")
        return value

    @field_validator("redis_durability")
    @classmethod
    def _durability(cls, value: str) -> str:
        if not re.fullmatch(r"auto|none|local|(local\+)?replicas:[1-9][0-9]*", value.lower()):
            raise ValueError("must be auto, none, local, replicas:N or local+replicas:N")
        return value.lower()

    @field_validator("redis_sentinels")
    @classmethod
    def _host_ports(cls, value: list[str]) -> list[str]:
        for entry in value:
            host, _, port = entry.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{entry!r} is not host:port")
        return value

    @model_validator(mode="after")
    def _sentinel_needs_master(self) -> Settings:
        if bool(self.redis_sentinels) != bool(self.redis_sentinel_master):
            raise ValueError(
                f"{ENV_PREFIX}REDIS_SENTINELS and {ENV_PREFIX}REDIS_SENTINEL_MASTER go together:"
                " set both (Sentinel) or neither (REDIS_URL alone)"
            )
        return self

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @field_validator("api_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must start with https:// (or http:// on loopback)")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _api_key_travels_encrypted(self) -> Settings:
        # The API key goes in a header of every call: over plain http it crosses the network in
        # clear text, which only loopback (the local sandbox) makes harmless.
        parts = urlsplit(self.api_base_url)
        insecure = parts.scheme == "http" and not _loopback(parts.hostname or "")
        if insecure and not self.api_allow_insecure_http:
            raise ValueError(
                f"{ENV_PREFIX}API_BASE_URL: http:// to {parts.hostname} would send the API key"
                f" in clear text: use https://, or set {ENV_PREFIX}API_ALLOW_INSECURE_HTTP=true"
            )
        return self

    @model_validator(mode="after")
    def _notify_url_policy(self) -> Settings:
        if self.notify_url:
            try:
                self.notify_policy().check_shape(self.notify_url, f"{ENV_PREFIX}NOTIFY_URL")
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return self

    def notify_policy(self) -> UrlPolicy:
        """Where the notification URL may point (checked again after DNS at each delivery)."""
        return UrlPolicy.of(self.notify_allow_http_loopback, self.notify_allowed_cidrs)

    def notify_url_for_display(self) -> str:
        """The notification URL with userinfo and query values masked, for logs and printing."""
        return masked(self.notify_url) if self.notify_url else ""

    @property
    def max_call_s(self) -> float:
        """The longest one API call can take: waiting for a connection, then each phase."""
        return (
            self.api_pool_timeout_s
            + self.api_connect_timeout_s
            + self.api_write_timeout_s
            + self.api_read_timeout_s
        )

    @property
    def settle_ms(self) -> int:
        """The in-doubt window in milliseconds."""
        return int(self.api_settle_s * 1000)

    @property
    def lease_ttl_ms(self) -> int:
        """The client lease as set: the lock TTL plus the in-doubt window, so a worker that dies
        mid-call holds the client until the API can no longer apply that call."""
        return self.lock_ttl_ms + self.settle_ms

    @model_validator(mode="after")
    def _lease_outlives_a_step(self) -> Settings:
        # The lease is renewed before every step. Between two renewals run at most three calls
        # (a step's call, a read to resolve it, the next step's evidence read), so the lease must
        # outlast three of the longest calls or a live call could lose it.
        floor_ms = 3000 * self.max_call_s
        if self.lock_ttl_ms < floor_ms:
            raise ValueError(
                f"{ENV_PREFIX}LOCK_TTL_MS ({self.lock_ttl_ms}) must be at least 3 x the longest"
                f" call (pool + connect + write + read timeouts) = {floor_ms:.0f} ms,"
                " or a live call could lose its lease"
            )
        return self

    def require_api_key(self) -> None:
        """Processes that call the API refuse to start without a key (every call would 401)."""
        if not self.api_key.get_secret_value():
            raise ConfigError(f"{ENV_PREFIX}API_KEY is required to call the Subaccount API")

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        return _redis_url(value)

    @field_validator("redis_read_url")
    @classmethod
    def _read_redis_scheme(cls, value: str) -> str:
        return _redis_url(value) if value else value  # '': REDIS_URL then

    def require_api(self) -> None:
        """Processes that call the API refuse to start without its URL (no default: a default
        would send production events to a local fake) and without a key."""
        if not self.api_base_url:
            raise ConfigError(
                f"{ENV_PREFIX}API_BASE_URL is required to call the Subaccount API (e.g."
                " https://api.pepipost.com/v6; the local sandbox is http://127.0.0.1:8025/v6)"
            )
        self.require_api_key()

    def api_base_url_for_display(self) -> str:
        """The API base URL with any password in it masked, for logs and printing."""
        return _masked(self.api_base_url)

    def redis_url_for_display(self) -> str:
        """The Redis URL with its password (and a TLS key's ssl_password) masked, for printing."""
        return _masked(self.redis_url)

    def redis_read_url_for_display(self) -> str:
        """REDIS_READ_URL with its password masked, for printing."""
        return _masked(self.redis_read_url)

    def redis_read_url_or_default(self) -> str:
        """The read-only user's URL when one is configured, else the process's own."""
        return self.redis_read_url or self.redis_url

    @property
    def redis_db(self) -> int:
        """The database REDIS_URL selects (its path, or `?db=` of a unix:// URL)."""
        return redis_url_db(self.redis_url)

    def broker_url(self) -> str:
        """REDIS_URL with BROKER_REDIS_DB as its database: where Dramatiq's keys live."""
        return with_redis_db(self.redis_url, self.broker_redis_db)

    def secrets(self) -> list[str]:
        """Every secret value configured, for the log redactor."""
        values = [self.api_key, self.stripe_webhook_secret, self.notify_secret]
        values += [self.redis_sentinel_password]
        values += [self.console_secret, self.console_proxy_secret]
        values += self.ingress_tokens + self.crm_webhook_secrets
        values += [SecretStr(t.get_secret_value().split(":", 2)[-1]) for t in self.console_tokens]
        found = [v.get_secret_value() for v in values if v.get_secret_value()]
        for url in (self.redis_url, self.redis_read_url, self.api_base_url):
            parts = urlsplit(url)
            if parts.password:  # as written and as the client decodes it
                found += dict.fromkeys([parts.password, unquote(parts.password)])
            found += [v for k, v in parse_qsl(parts.query) if k == "ssl_password" and v]
        notify = urlsplit(self.notify_url)  # a token in its query is a secret too
        found += [v for _, v in parse_qsl(notify.query) if len(v) >= 8]
        return found


def _masked(url: str) -> str:
    """`url` with the password of its userinfo and any ssl_password replaced by ***."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password:
        netloc = netloc.replace(f":{parts.password}@", ":***@")
    if "ssl_password=" not in parts.query:
        return urlunsplit(parts._replace(netloc=netloc))
    query = [(k, "***" if k == "ssl_password" else v) for k, v in parse_qsl(parts.query)]
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query, safe="/*")))


def _redis_url(value: str) -> str:
    if urlsplit(value).scheme not in REDIS_SCHEMES:
        raise ValueError("must start with redis://, rediss:// (TLS) or unix://")
    return value


def redis_url_db(url: str) -> int:
    """The database a Redis URL selects as redis-py reads it: `?db=` first, else the path of a
    redis:// or rediss:// URL, else 0."""
    parts = urlsplit(url)
    in_query = dict(parse_qsl(parts.query)).get("db")
    if in_query:
        return int(in_query)
    path = parts.path.strip("/")
    return int(path) if parts.scheme != "unix" and path.isdigit() else 0


def with_redis_db(url: str, db: int) -> str:
    """`url` selecting database `db` instead (`?db=` for unix:// or where the URL had one, else
    the path); the rest as is."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    if parts.scheme == "unix" or any(k == "db" for k, _ in query):
        query = [(k, v) for k, v in query if k != "db"] + [("db", str(db))]
        # by hand: urlunsplit would drop a unix URL's empty host (`unix:///path` → `unix:/path`)
        return f"{url.split('?', 1)[0]}?{urlencode(query, safe='/*')}"
    return urlunsplit(parts._replace(path=f"/{db}"))


def _loopback(host: str) -> bool:
    """Is `host` this machine (localhost, 127.0.0.0/8, ::1)?"""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; raise ConfigError with one line per bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors(include_input=False):
            message = err["msg"].removeprefix("Value error, ")
            if err["loc"]:
                message = f"{ENV_PREFIX}{str(err['loc'][0]).upper()}: {message}"
            lines.append(message)
        raise ConfigError("; ".join(lines)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once on first use (never at import time)."""
    return load_settings()
