"""The one registry of components: every component shows the same face, and a config picks which run."""
from __future__ import annotations

import inspect

from actors.components import COMPONENTS, IN_POINTS, RESTORABLE, enabled_components
from core.config import Settings
from core.face import Component

FACE = [name for name, member in inspect.getmembers(Component) if inspect.isfunction(member) and not name.startswith("_")]


def test_every_registered_component_has_the_whole_face_under_its_own_name():
    for name, component in COMPONENTS.items():
        assert component.name == name
        missing = [method for method in FACE if not callable(getattr(component, method, None))]
        assert missing == [], f"{name} lacks {missing}"
        assert isinstance(component.in_points, bool) and isinstance(component.per_kb, bool)
        assert isinstance(component.restorable, bool)


def test_the_mirror_and_the_binlog_archive_are_no_part_of_a_point_and_every_other_component_is():
    assert IN_POINTS == ["mysql", "postgres", "search", "redis", "config"]
    assert not COMPONENTS["minio"].in_points and not COMPONENTS["binlog"].in_points


def test_the_binlog_archive_alone_is_never_restored_by_itself_the_mirror_is():
    assert RESTORABLE == ["mysql", "postgres", "search", "redis", "config", "minio"]


def test_a_config_runs_the_enabled_components_in_the_registry_order_and_config_only_with_a_ragflow_dir(tmp_path):
    settings = Settings(storage_root=tmp_path, redis={"enabled": True}, search={"enabled": False})
    assert enabled_components(settings) == ["mysql", "redis"]
    settings = Settings(storage_root=tmp_path, ragflow_dir=tmp_path, redis={"enabled": False})
    assert enabled_components(settings) == ["mysql", "search", "config"]
