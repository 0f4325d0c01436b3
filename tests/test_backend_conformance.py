"""The backend conformance suite (casstore.testing.conformance) on every built-in backend.

A backend joins by adding a subclass of ``BackendConformance`` with a ``backend``
fixture (and, where the store can be opened from another process, a
``backend_factory``); see the docstring of ``casstore.testing.conformance``.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import fsspec
import pytest

from casstore.backend import Backend, FsspecBackend, LocalBackend, MemoryBackend, open_backend
from casstore.testing.conformance import BackendConformance


class TestLocalBackend(BackendConformance):
    @pytest.fixture
    def backend(self, tmp_path: Path) -> Iterator[Backend]:
        b = LocalBackend(tmp_path / "store")
        yield b
        b.close()

    @pytest.fixture
    def backend_factory(self, backend: LocalBackend) -> Callable[[], Backend]:
        return functools.partial(open_backend, backend.root)

    @pytest.fixture
    def sandbox(self, tmp_path: Path) -> Path:
        return tmp_path


class TestLocalBackendNotDurable(TestLocalBackend):
    @pytest.fixture
    def backend(self, tmp_path: Path) -> Iterator[Backend]:
        b = LocalBackend(tmp_path / "store", durable=False)
        yield b
        b.close()


class TestMemoryBackend(BackendConformance):
    @pytest.fixture
    def backend(self) -> Iterator[Backend]:
        b = MemoryBackend(f"conformance-{uuid.uuid4().hex}")
        yield b
        for key in list(b.list()):
            b.delete(key)
        b.close()


class TestFsspecBackendOverLocalFiles(BackendConformance):
    @pytest.fixture
    def backend(self, tmp_path: Path) -> Iterator[Backend]:
        b = FsspecBackend(fsspec.filesystem("file"), str(tmp_path / "store"))
        yield b
        b.close()

    @pytest.fixture
    def backend_factory(self, backend: FsspecBackend) -> Callable[[], Backend]:
        return functools.partial(FsspecBackend, fsspec.filesystem("file"), backend.root)

    @pytest.fixture
    def sandbox(self, tmp_path: Path) -> Path:
        return tmp_path
