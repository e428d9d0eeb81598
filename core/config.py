"""Settings: one YAML file plus environment overrides, validated, with errors that name their path.

Environment overrides use the prefix RAGFLOW_BACKUP_ and `__` between levels, e.g.
RAGFLOW_BACKUP_MYSQL__PORT=3307. Secrets left out of the file are read from RAGFlow's own
`docker/.env` (MYSQL_PASSWORD, MINIO_PASSWORD, ...), so they are never copied into ours.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlsplit, urlunsplit

import yaml
from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

from core import redact
from core.layout import Layout
from core.ragflow_env import EnvFile, load_ragflow_env

DEFAULT_CONFIG_PATH = Path("/etc/ragflow-backup/config.yml")
CONFIG_ENV_VAR = "RAGFLOW_BACKUP_CONFIG"


class ConfigError(Exception):
    """The configuration cannot be used; the message lists every problem with its path."""


class UnreadableSecret(SecretStr):
    """A secret taken from a line of RAGFlow's .env that cannot be decoded. Only code that uses the value
    fails (ConfigError naming the line), so a command that does not need it (`restore -C config`, the
    repair) goes on."""

    def __init__(self, problem: str):
        super().__init__("")
        self.problem = problem

    def get_secret_value(self) -> str:
        raise ConfigError(self.problem)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BrokerSettings(Section):
    # RAGFlow uses Redis DB 1; our queues go to another DB of the same server by default.
    url: SecretStr = SecretStr("redis://127.0.0.1:6379/2")
    namespace: str = "ragflow-backup"
    # A worker that stops heart-beating this long (ms) is dead: its unacked messages are requeued.
    heartbeat_timeout_ms: int = Field(60_000, ge=1_000)
    # Out of a million broker commands, how many also run that requeue maintenance.
    maintenance_chance: int = Field(1_000, ge=1, le=1_000_000)


class MySQLSettings(Section):
    enabled: bool = True
    mode: Literal["tcp", "docker"] = "tcp"
    host: str = "127.0.0.1"
    port: int = Field(5455, ge=1, le=65535)  # RAGFlow publishes MySQL on 5455 (MYSQL_PORT)
    user: str = "root"
    password: SecretStr | None = None  # default: MYSQL_PASSWORD of RAGFlow's .env
    database: str = "rag_flow"
    compose_service: str = "mysql"  # docker mode: the container is found by this compose label
    compose_project: str | None = None
    # gzip (readable everywhere; change points need it) or zstd (mysql_dump.sql.zst: ~2x faster, 15 % smaller).
    compression: Literal["gzip", "zstd"] = "gzip"
    compression_level: int = Field(6, ge=1, le=9)  # gzip's
    zstd_level: int = Field(3, ge=1, le=19)
    full_every_days: int = Field(7, ge=0, le=366)  # >0: change points of a younger full point (README); 0: all full
    # A dump that receives nothing for this long is given up (a hung server would block it forever).
    stall_timeout_seconds: int = Field(600, ge=1)


class PostgresSettings(Section):
    """RAGFlow's metadata database when its .env says DB_TYPE=postgres (actors/postgres/). Exactly one of
    mysql and postgres is enabled: enabling this one turns mysql off unless the file enables both."""

    enabled: bool = False
    mode: Literal["tcp", "docker"] = "tcp"
    host: str = "127.0.0.1"
    port: int = Field(5432, ge=1, le=65535)  # POSTGRES_PORT (RAGFlow's service_conf: 5432)
    user: str = "rag_flow"  # POSTGRES_USER
    password: SecretStr | None = None  # default: POSTGRES_PASSWORD of RAGFlow's .env
    database: str = "rag_flow"  # POSTGRES_DBNAME
    compose_service: str = "postgres"  # docker mode: the container is found by this compose label
    compose_project: str | None = None
    # pg_dump's own compression of its custom format (0-9).
    compression_level: int = Field(6, ge=0, le=9)
    # pg_restore's parallel jobs loading a point in tcp mode (docker mode streams into one: no jobs from a pipe).
    restore_jobs: int = Field(2, ge=1, le=32)
    # A dump that receives nothing for this long is given up (a hung server would block it forever).
    stall_timeout_seconds: int = Field(600, ge=1)


class BinlogSettings(Section):
    """MySQL's binary log archived continuously (actors/binlog/), for restores to any second. On when mysql is
    and the server writes a binary log (log_bin); the agent runs it."""
    enabled: bool = True
    poll_seconds: float = Field(0.5, gt=0, le=60)  # how often new bytes are checked into the archive
    lag_alert_seconds: float = Field(60, gt=0)  # an alert when the archive is further behind the server
    tool: str | None = None  # mariadb-binlog or mysqlbinlog (default: the first that runs where the client runs)


class MinioSettings(Section):
    enabled: bool = True
    endpoint: str = "127.0.0.1:9000"
    access_key: str | None = None  # default: MINIO_USER of RAGFlow's .env
    secret_key: SecretStr | None = None  # default: MINIO_PASSWORD
    secure: bool = False
    # RAGFlow's single-bucket mode (MINIO_BUCKET, MINIO_PREFIX_PATH): mirror only that bucket/prefix.
    bucket: str | None = None
    prefix_path: str | None = None
    mirror_dir: str = "minio_mirror"  # under the storage root
    # Bucket notifications mirror each change within seconds. An S3 store (STORAGE_IMPL=AWS_S3) or a MinIO fork
    # without them: false, and the scheduled reconcile alone mirrors; the RPO is then its interval.
    events: bool = True
    # Overwritten and deleted objects are kept this long, for point-in-time restores of the store.
    version_retention_days: int = Field(30, ge=0)  # an upper bound; the budget below usually binds first
    # Bytes of kept versions at most this share of the mirror's current bytes: the oldest are dropped first,
    # so history is as long as fits. 20 %: at the requirement's 10 % daily churn, about 2 days of
    # any-moment history with the total under 2x production (docs/benchmarks.md, figure 5). null: no budget.
    version_budget_percent: float | None = Field(20, ge=0)
    # An alert when the budget (or retention) leaves a shorter any-moment history than this.
    min_pitr_hours: float = Field(24, ge=0)
    # How often the agent looks for buckets created since it started (RAGFlow makes one per KB).
    bucket_discovery_seconds: float = Field(10, gt=0)
    # Objects a reconcile copies, and a restore puts back, at once (each is a round trip; 1: one by one).
    reconcile_workers: int = Field(8, ge=1, le=64)
    # The mirror's share of the machine (% of all cores' CPU time, over a minute), paced by the agent itself
    # (core/cpu_budget.py); 0: unpaced. It covers the whole mirror path: the copies, and taking each event
    # in (listener, dispatcher, Dramatiq and Redis), whose CPU the copies pay back. 6 % leaves room for
    # what is not charged (idle polling, scheduler, metrics) inside the requirement's 10 %
    # (docs/benchmarks.md, figure 7). Catch-up (a first mirror, or a reconcile finding more than
    # catch_up_backlog objects to copy, e.g. after an outage) uses catch_up_cpu_percent instead.
    cpu_budget_percent: float = Field(6, ge=0, le=100)
    catch_up_cpu_percent: float = Field(50, ge=0, le=100)
    catch_up_backlog: int = Field(1000, ge=1)
    # A request to MinIO that receives nothing for this long fails (a hung server), and is retried later.
    timeout_seconds: float = Field(60, gt=0)

    @field_validator("endpoint")
    @classmethod
    def _host_port(cls, value: str) -> str:
        # The value is not echoed: a URL written here may hold the password.
        if "://" in value or "@" in value or "/" in value:
            raise ValueError("minio.endpoint is host:port only (e.g. 127.0.0.1:9000): no scheme (set minio.secure "
                             "for https), no user or password (minio.access_key / secret_key), no path")
        return value


class SearchSettings(Section):
    enabled: bool = True
    engine: Literal["elasticsearch", "opensearch"] = "elasticsearch"
    url: str = "http://127.0.0.1:1200"
    user: str | None = "elastic"
    password: SecretStr | None = None  # default: ELASTIC_PASSWORD (or OPENSEARCH_PASSWORD)
    repository: str = "ragflow_backup"
    # Where the snapshot repository lives as the search server sees it (inside path.repo).
    repository_path: str = "/usr/share/elasticsearch/backups/ragflow_backup"
    verify_certs: bool = True
    # RAGFlow's indices: ragflow_<tenant>, ragflow_doc_meta_<tenant>, memory_*.
    indices: list[str] = Field(default_factory=lambda: ["ragflow_*", "memory_*"])
    keep_snapshots: int = Field(7, ge=1)
    snapshot_prefix: str = "ragflow-backup-"
    snapshot_timeout_seconds: int = Field(3600, ge=10)
    # Snapshots between points (actors/search/interval.py) for `restore --at`; 0 = off; a cron tick (validator).
    snapshot_interval_minutes: int = Field(60, ge=0)
    interval_keep_hours: int = Field(48, ge=1)  # and never older than the oldest point
    lock_wait_seconds: int = Field(600, ge=0)  # a backup's wait for an interval snapshot's lock (README, PITR)
    interval_alert_failures: int = Field(3, ge=1)  # interval snapshots failed in a row before an alert

    @field_validator("snapshot_interval_minutes")
    @classmethod
    def _interval(cls, value: int) -> int:
        if value and not (60 % value == 0 or (value % 60 == 0 and 1440 % value == 0)):
            raise ValueError(f"{value} minutes cannot be a cron tick: use a divisor of 60 (15, 30, 60) "
                             f"or whole hours dividing 24 (120, 180, 240, 360, 720, 1440), or 0 for none")
        return value


class RedisSettings(Section):
    enabled: bool = False  # optional component, off by default
    host: str = "127.0.0.1"
    port: int = Field(6379, ge=1, le=65535)
    password: SecretStr | None = None  # default: REDIS_PASSWORD
    db: int = Field(1, ge=0)  # RAGFlow's DB


class ConfigFilesSettings(Section):
    """RAGFlow's docker/ files an operator edits; archived daily and versioned in Git."""

    enabled: bool = True  # needs ragflow_dir
    patterns: list[str] = Field(default_factory=lambda: [
        ".env", "*.yml", "*.yaml", "*.template", "entrypoint.sh", "init.sql", "nginx/*.conf", "*.toml",
    ])
    git_repo: str = "config_repo"  # under the storage root


class WatchSettings(Section):
    """The agent's watcher of RAGFlow's docker/ folder."""

    enabled: bool = True
    debounce_seconds: float = Field(2.0, ge=0)  # one commit per burst of edits
    ignore: list[str] = Field(default_factory=lambda: ["*.swp", "*.swx", "*.swo", "*~", ".#*", "#*#", "4913", "*.tmp"])


class ScheduleSettings(Section):
    """Cron expressions (5 fields, local time of the agent). An empty string turns a job off."""

    backup: str = "0 2 * * *"  # every enabled component; retention runs after it
    verify: str = "30 3 * * *"
    reconcile: str = "*/15 * * * *"  # MinIO listing diff: heals missed events
    # Mirror versions past minio.version_retention_days or the version budget; hourly, so a day of churn
    # never piles up on top of the budget.
    versions_prune: str = "45 * * * *"
    drill: str = "0 4 1 * *"  # monthly restore drill into scratch targets
    offsite_mirror: str = "30 4 * * *"  # the MinIO mirror and config history to the offsite repository
    offsite_check: str = "0 5 * * 0"  # restic check: structure, weekly
    offsite_check_data: str = "0 5 15 * *"  # restic check --read-data-subset, monthly

    @field_validator("*")
    @classmethod
    def _cron(cls, value: str) -> str:

        if value and not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a cron expression (5 fields, e.g. '0 2 * * *'; '' turns it off)")
        return value


class MetricsSettings(Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(9108, ge=0, le=65535)  # 0: any free port (tests)
    # Scrapes and probes within this many seconds share one health report (collecting reads every manifest).
    cache_seconds: float = Field(5, ge=0)
    # HTTP clients are untrusted: at most this many connections, each sending its request within the timeout.
    max_connections: int = Field(64, ge=1, le=1024)
    read_timeout_seconds: float = Field(10, gt=0)
    # Required when host is not loopback: a file holding the token clients send (agent/console/auth.py).
    auth_token_file: Path | None = None


class NotifySettings(Section):
    urls: list[SecretStr] = Field(default_factory=list)  # Apprise URLs: mailto://, ntfy://, slack://, ...
    desktop: bool = False  # notify-py, for a desktop session
    storage_threshold: float = Field(0.8, gt=0, le=1)
    min_interval_seconds: int = Field(3600, ge=0)  # the same alert at most this often
    # Recovery point objectives: alert when the last success is older than this.
    rpo_hours: dict[str, float] = Field(default_factory=lambda: {"mysql": 26, "postgres": 26, "search": 26, "config": 26,
                                                                 "redis": 26})
    mirror_lag_seconds: int = Field(3600, ge=1)
    check_interval_seconds: float = Field(60, gt=0)  # how often the agent looks for alerts to send
    # Dead-man's switch (Healthchecks or Uptime Kuma push URL): pinged at each backup's start and end (core/ping.py).
    ping_url: SecretStr | None = None
    ping_timeout_seconds: float = Field(10, gt=0, le=120)


class RetentionSettings(Section):
    daily: int = Field(7, ge=1)
    weekly: int = Field(4, ge=0)
    monthly: int = Field(12, ge=0)
    pinned_warn_days: int = Field(180, ge=1)  # a pinned point older than this is reported (never deleted)


class RetentionOverride(Section):
    """The offsite repository's policy; each left out takes the local retention's value."""

    daily: int | None = Field(None, ge=1)
    weekly: int | None = Field(None, ge=0)
    monthly: int | None = Field(None, ge=0)


class OffsiteSettings(Section):
    """A second, encrypted and deduplicated copy in a restic repository (USB disk, another NAS, S3, SFTP).

    The repository password is never in this file: `password_file`, or the environment
    (RAGFLOW_BACKUP_OFFSITE_PASSWORD, RESTIC_PASSWORD). Backend credentials (AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY, ...) come from the environment or from `env_file` (KEY=VALUE lines, 0600).
    """

    enabled: bool = False
    repository: str | None = None  # a restic URL: /media/usb/ragflow, s3:https://host/bucket/path, sftp:user@host:/path
    password_file: Path | None = None
    env_file: Path | None = None
    password: None = None  # refused with a clear message (see the validator)
    retention: RetentionOverride = RetentionOverride()
    # restic check --read-data-subset on the monthly check: "5%" or "1/12".
    read_data_subset: str = "5%"
    restic: str = "restic"  # the binary
    host: str | None = None  # restic's --host for our snapshots (default: this machine's name)

    @field_validator("password", mode="before")
    @classmethod
    def _no_password(cls, value: object) -> None:
        if value is not None:
            raise ValueError("the offsite repository password must not be in the config file: put it in a 0600 file "
                             "named by offsite.password_file, or in RAGFLOW_BACKUP_OFFSITE_PASSWORD")
        return None

    @field_validator("read_data_subset")
    @classmethod
    def _subset(cls, value: str) -> str:

        if not re.fullmatch(r"\d+(\.\d+)?%|\d+/\d+", value):
            raise ValueError(f"{value!r} is not a restic data subset ('5%' or '1/12')")
        return value


class EncryptionSettings(Section):
    """Artifacts of a point encrypted (age) to public recipients: the agent holds no key that reads them."""

    enabled: bool = False
    # age public keys ("age1...") or paths of recipients files (one key per line).
    recipients: list[str] = Field(default_factory=list)


class DockerSettings(Section):
    host: str | None = None  # default: DOCKER_HOST or the local socket


class StagingSettings(Section):
    """A second RAGFlow's services `drill --staging` restores the newest point into (core/staging.py), REPLACING their
    data; one left out is drilled on production under scratch names. Secrets go here, not from production's .env."""
    mysql: MySQLSettings | None = None
    postgres: PostgresSettings | None = None
    search: SearchSettings | None = None
    minio: MinioSettings | None = None
    redis: RedisSettings | None = None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAGFLOW_BACKUP_", env_nested_delimiter="__", extra="forbid")

    storage_root: Path = Path("/share/backups/ragflow")
    ragflow_dir: Path | None = None  # RAGFlow's docker/ folder
    broker: BrokerSettings = BrokerSettings()
    mysql: MySQLSettings = MySQLSettings()
    postgres: PostgresSettings = PostgresSettings()
    binlog: BinlogSettings = BinlogSettings()
    minio: MinioSettings = MinioSettings()
    search: SearchSettings = SearchSettings()
    redis: RedisSettings = RedisSettings()
    config_files: ConfigFilesSettings = ConfigFilesSettings()
    retention: RetentionSettings = RetentionSettings()
    watch: WatchSettings = WatchSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    metrics: MetricsSettings = MetricsSettings()
    notify: NotifySettings = NotifySettings()
    docker: DockerSettings = DockerSettings()
    offsite: OffsiteSettings = OffsiteSettings()
    encryption: EncryptionSettings = EncryptionSettings()
    staging: StagingSettings | None = None  # a second RAGFlow for drills (see StagingSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment wins over the file (passed as init values); no dotenv of our own.
        return env_settings, init_settings

    @model_validator(mode="after")
    def _one_metadata_database(self) -> Settings:
        if self.postgres.enabled:
            if self.mysql.enabled and "enabled" in self.mysql.model_fields_set:
                raise ValueError("mysql and postgres are both enabled, but RAGFlow keeps its metadata in one "
                                 "database (DB_TYPE): set mysql.enabled: false or postgres.enabled: false")
            self.mysql = self.mysql.model_copy(update={"enabled": False})
        return self

    def ragflow_env(self) -> dict[str, str]:
        return self.ragflow_env_file().values

    @property
    def layout(self) -> Layout:
        """Every path under storage_root (core/layout.py)."""
        return Layout.of(self)

    def ragflow_env_file(self) -> EnvFile:
        return load_ragflow_env(self.ragflow_dir) if self.ragflow_dir else EnvFile()


def _format_errors(error: ValidationError, source: str) -> str:
    lines = [f"{source} is not valid:"]
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown option (check its spelling and level)"
        lines.append(f"  At '{where}': {message}")
    return redact.redact("\n".join(lines))  # validators quote input values


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    if explicit:
        return Path(explicit)
    return Path(os.environ.get(CONFIG_ENV_VAR) or DEFAULT_CONFIG_PATH)


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    """Load, validate and fill in secrets; raise ConfigError naming the file and every bad key."""
    path = config_path(path)
    raw = _parse(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping of options at its top level")
    try:
        settings = Settings(**raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, str(path))) from None
    except SettingsError as exc:  # an environment override that is not valid JSON for a section or list
        raise ConfigError(redact.redact(f"{exc}: a RAGFLOW_BACKUP_* variable of that option must hold JSON "
                                        "(e.g. RAGFLOW_BACKUP_NOTIFY__URLS='[\"ntfy://topic\"]')")) from None
    if settings.ragflow_dir is not None and not settings.ragflow_dir.is_absolute():
        settings.ragflow_dir = (path.parent / settings.ragflow_dir).resolve()
    if not settings.storage_root.is_absolute():
        settings.storage_root = (path.parent / settings.storage_root).resolve()
    fill_secrets_from_ragflow_env(settings)
    redact.remember_settings(settings)
    return settings


def read_config_text(path: Path) -> str:
    """The config file's text; ConfigError when it is missing, not a file, unreadable or not UTF-8.
    The values of its secret-named lines are handed to core.redact first: an error may quote them."""
    if path.is_dir():
        raise ConfigError(f"config file {path} is a directory: point --config / {CONFIG_ENV_VAR} at the YAML file")
    if not path.is_file():
        raise ConfigError(
            f"config file {path} not found: create one with `ragflow-backup init --ragflow-dir PATH`, "
            f"or point --config / {CONFIG_ENV_VAR} at it"
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read ({exc.strerror}): check its owner and mode "
                          f"(the agent runs as uid {os.getuid()})") from None
    redact.remember_assignments(data.decode("utf-8", "replace"))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(f"{path} is not UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start} (line {line}, "
                          f"column {column}) cannot be decoded; save the file as UTF-8") from None


def _parse(path: Path) -> Any:
    try:
        return yaml.safe_load(read_config_text(path)) or {}
    except yaml.YAMLError as exc:
        # The error quotes the line it stopped on, which may hold a password.
        raise ConfigError(redact.redact(f"{path} is not valid YAML: {exc}")) from None
    except RecursionError:
        raise ConfigError(f"{path} nests too deeply to be a config file") from None


def fill_secrets_from_ragflow_env(settings: Settings) -> None:
    """Take each secret not set in our config from RAGFlow's .env, so it is kept in one place.

    A variable on a line that cannot be decoded becomes an UnreadableSecret: the command that needs it says
    which line to fix; the others go on."""
    env_file = settings.ragflow_env_file()
    env = env_file.values

    def take(name: str) -> SecretStr | None:
        if env.get(name):
            return SecretStr(env[name])
        unreadable = env_file.unreadable_variable(name)
        return UnreadableSecret(f"{name} of RAGFlow's .env: {unreadable.message()}") if unreadable else None

    if settings.mysql.password is None:
        settings.mysql.password = take("MYSQL_PASSWORD")
    if settings.postgres.password is None:
        settings.postgres.password = take("POSTGRES_PASSWORD")
    if settings.minio.access_key is None and env.get("MINIO_USER"):
        settings.minio.access_key = env["MINIO_USER"]
    if settings.minio.secret_key is None:
        settings.minio.secret_key = take("MINIO_PASSWORD")
    if settings.search.password is None:
        settings.search.password = take("ELASTIC_PASSWORD" if settings.search.engine == "elasticsearch"
                                        else "OPENSEARCH_PASSWORD")
    if settings.redis.password is None:
        settings.redis.password = take("REDIS_PASSWORD")
    # The broker usually lives on RAGFlow's Redis: a URL without a password takes REDIS_PASSWORD.
    url = urlsplit(settings.broker.url.get_secret_value())
    if url.scheme.startswith("redis") and not url.password:
        password = take("REDIS_PASSWORD")
        if isinstance(password, UnreadableSecret):
            settings.broker.url = UnreadableSecret(f"broker.url takes its password from {password.problem}")
        elif password is not None:
            netloc = f":{quote(password.get_secret_value(), safe='')}@{url.netloc.rpartition('@')[2]}"
            settings.broker.url = SecretStr(urlunsplit(url._replace(netloc=netloc)))
