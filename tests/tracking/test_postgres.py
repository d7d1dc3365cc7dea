"""recsys-train's MLflow run on a real PostgreSQL store (a throwaway server, see conftest), and
that a machine without the server skips those tests only outside CI."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from recsys.tracking.mlflow import REGISTERED_MODEL
from tests.tracking import conftest as tracking_conftest
from tests.tracking.checks import check_recommendations, check_run, only_run, registered_version
from tests.tracking.conftest import isolated_mlflow, train_tracked


@pytest.mark.slow
def test_run_and_registered_model_on_postgres(tmp_path, tiny_processed, postgres_uri):
    with isolated_mlflow(tmp_path, postgres_uri):
        metrics, _ = train_tracked(tmp_path, postgres_uri, tiny_processed, "model=gmf")
        client = MlflowClient(postgres_uri)
        run = only_run(client)
        check_run(client, run, tiny_processed, metrics, "GMF", epochs=2)
        version = registered_version(client, run.info.run_id)
        check_recommendations(f"models:/{REGISTERED_MODEL}/{version}", tiny_processed)


@pytest.fixture
def no_postgres_binaries(tmp_path, monkeypatch) -> None:
    """A machine without PostgreSQL: nothing on PATH, no Debian install folder."""
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(tracking_conftest, "DEBIAN_POSTGRES", tmp_path / "no-postgresql")


@pytest.mark.parametrize("ci", ["true", "1"])
def test_missing_server_fails_under_ci(no_postgres_binaries, monkeypatch, ci):
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception, match=r"CI=true.*apt-get install postgresql"):
        tracking_conftest.require_postgres_bin()


@pytest.mark.parametrize("ci", [None, "false", ""])
def test_missing_server_skips_outside_ci(no_postgres_binaries, monkeypatch, ci):
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.skip.Exception, match="neither on PATH nor in"):
        tracking_conftest.require_postgres_bin()


def test_debian_install_folder_is_found_off_path(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    for version in ("13", "15"):
        bindir = tmp_path / "postgresql" / version / "bin"
        bindir.mkdir(parents=True)
        for tool in tracking_conftest.PG_TOOLS:
            (bindir / tool).touch()
    monkeypatch.setattr(tracking_conftest, "DEBIAN_POSTGRES", tmp_path / "postgresql")
    assert tracking_conftest.require_postgres_bin() == tmp_path / "postgresql" / "15" / "bin"
