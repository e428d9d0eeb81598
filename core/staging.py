"""The staging RAGFlow of a config (`staging:`, core/config.py StagingSettings): settings whose services are the
staging ones, everything else (storage root, mirror, snapshot repository) production's, for a drill that restores
into staging. Refused when a staging service is a production one: a drill replaces staging's data."""
from __future__ import annotations

from core.component import PermanentError
from core.config import Settings

STAGED = ("mysql", "minio", "redis")  # the services a staging section may name


def _same(name: str, production, staging) -> bool:
    if name == "mysql":
        return (production.host, production.port, production.database) == (staging.host, staging.port, staging.database)
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
        raise PermanentError("no staging RAGFlow in the config: add a `staging:` section naming its mysql, minio "
                             "and/or redis (README, \"Drills\"), or drill without --staging (scratch names)")
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
        if name == "redis":
            staging = staging.model_copy(update={"enabled": True})
        update[name] = staging
    return settings.model_copy(update=update)
