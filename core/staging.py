"""The staging RAGFlow of a config (`staging:`, core/config.py StagingSettings): settings whose services are the
staging ones, everything else (storage root, mirror, snapshot repository) production's, for a drill that restores
into staging. Refused when a staging service is a production one: a drill replaces staging's data."""
from __future__ import annotations

from urllib.parse import urlsplit

from core.component import PermanentError
from core.config import SearchSettings, Settings

STAGED = ("mysql", "postgres", "search", "minio", "redis")  # the services a staging section may name
DEFAULT_PORTS = {"http": 80, "https": 443}


def _server(search: SearchSettings) -> tuple[str, int | None]:
    """(host, port) of a search server's url, as written (ports given or the scheme's)."""
    parts = urlsplit(search.url)
    try:
        port = parts.port
    except ValueError:  # not a port: compared as written
        port = None
    return (parts.hostname or search.url).lower(), port or DEFAULT_PORTS.get(parts.scheme)


def _same(name: str, production, staging) -> bool:
    if name in ("mysql", "postgres"):
        if name == "postgres" and production.mode == staging.mode == "docker":  # the container, found by its labels
            return (production.compose_project, production.compose_service, production.database) == \
                (staging.compose_project, staging.compose_service, staging.database)
        return (production.host, production.port, production.database) == (staging.host, staging.port, staging.database)
    if name == "search":
        return _server(production) == _server(staging)
    if name == "minio":
        return production.endpoint == staging.endpoint
    return (production.host, production.port, production.db) == (staging.host, staging.port, staging.db)


def staged_services(settings: Settings) -> list[str]:
    """The services the staging section names (empty without one)."""
    if settings.staging is None:
        return []
    return [name for name in STAGED if getattr(settings.staging, name) is not None]


def staging_settings(settings: Settings) -> Settings:
    """A copy of `settings` whose services are staging's (those it names); PermanentError when there is no
    staging section, or one of its services is production's own (a drill would replace production's data)."""
    names = staged_services(settings)
    if not names:
        raise PermanentError("no staging RAGFlow in the config: add a `staging:` section naming its mysql or postgres, "
                             "search, minio and/or redis (README, \"Drills\"), or drill without --staging (scratch "
                             "names)")
    update = {}
    for name in names:
        staging = getattr(settings.staging, name)
        if _same(name, getattr(settings, name), staging):
            raise PermanentError(f"staging.{name} is production's {name} (same server and database/endpoint): a "
                                 "staging drill replaces its data, so it is refused; name the staging service")
        if name == "minio":  # objects come from production's mirror, under production's names
            staging = staging.model_copy(update={"mirror_dir": settings.minio.mirror_dir, "enabled": True,
                                                 "bucket": settings.minio.bucket,
                                                 "prefix_path": settings.minio.prefix_path})
        if name == "search":  # production's indices, restored under their live names
            staging = staging.model_copy(update={"enabled": True, "indices": settings.search.indices})
        if name in ("redis", "postgres"):
            staging = staging.model_copy(update={"enabled": True})
        update[name] = staging
    return settings.model_copy(update=update)
