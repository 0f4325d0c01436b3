"""An alias set while another writer deletes its version is never left pointing at nothing.

`set_alias` checks that the version is live, then appends to the alias's history; a
deletion in between (another process: its event, and its removal of the aliases it finds
after that event) used to leave the alias set onto a deleted version with no removal
recorded: the call returned normally and `models:/<name>@<alias>` then resolved to
nothing. Now the setter finds the deletion after its append, records the removal and
raises, naming the version and what to do.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from casstore.exceptions import ObjectNotFoundError
from casstore.objects import open_store
from casstore.registry import Registry

D1, D2 = "1" * 64, "2" * 64


@pytest.mark.parametrize("what", ["version", "model"])
def test_a_deletion_between_the_check_and_the_append_is_raised_and_the_removal_recorded(
        tmp_path: Path, what: str, monkeypatch: pytest.MonkeyPatch) -> None:
    root = str(tmp_path / "store")
    setter = Registry(open_store(root, create=True).backend)
    other = Registry(open_store(root).backend)  # the deleting writer, with its own view
    setter.create_version("m", D1)
    setter.create_version("m", D2)
    real = Registry._append_alias

    def deleted_first(self: Registry, name: str, alias: str, version: int | None, reason: str | None = None) -> None:
        if self is setter and version == 2:  # the other writer deletes right after the setter's check
            other.delete_version("m", 2) if what == "version" else other.delete_model("m")
        real(self, name, alias, version, reason)

    monkeypatch.setattr(Registry, "_append_alias", deleted_first)
    with pytest.raises(ObjectNotFoundError, match=r"version 2 of registered model 'm' was deleted by another writer.*not set"):
        setter.set_alias("m", "prod", 2)
    monkeypatch.setattr(Registry, "_append_alias", real)
    history = setter.alias_history("m", "prod")
    assert [e.version for e in history] == [2, None]  # the removal is on the record
    if what == "version":
        with pytest.raises(ObjectNotFoundError, match="no alias 'prod'"):
            setter.get_version_by_alias("m", "prod")
        setter.set_alias("m", "prod", 1)  # a live version is taken as before
        assert setter.get_version_by_alias("m", "prod").version == 1


_SETTER = """
import sys, time
from casstore.exceptions import ObjectNotFoundError
from casstore.objects import open_store
from casstore.registry import Registry
reg = Registry(open_store(sys.argv[1]).backend)
end, n = time.time() + float(sys.argv[2]), 0
while time.time() < end:
    n += 1
    try:
        v = reg.create_version("m", "%064x" % n).version
        reg.set_alias("m", "prod", v)
    except ObjectNotFoundError:
        pass
"""

_DELETER = """
import sys, time
from casstore.exceptions import ObjectNotFoundError
from casstore.objects import open_store
from casstore.registry import Registry
reg = Registry(open_store(sys.argv[1]).backend)
end = time.time() + float(sys.argv[2])
while time.time() < end:
    try:
        reg.delete_version("m", reg.latest_version("m").version)
    except ObjectNotFoundError:
        pass
"""


def test_processes_setting_and_deleting_leave_no_alias_on_a_deleted_version(tmp_path: Path) -> None:
    """Real processes: one registers versions and points `prod` at each, one deletes the
    latest version; afterwards no alias history ends at a deleted version."""
    root = str(tmp_path / "store")
    reg = Registry(open_store(root, create=True).backend)
    reg.create_version("m", D1)
    procs = [subprocess.Popen([sys.executable, "-c", code, root, "2"]) for code in (_SETTER, _DELETER)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    deleted = {mv.version for mv in reg.list_versions("m", include_deleted=True) if mv.deleted}
    history = reg.alias_history("m", "prod")
    assert history and deleted
    assert history[-1].version is None or history[-1].version not in deleted
