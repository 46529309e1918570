"""Tests of worker.deps and the Celery configuration: every client of Redis (broker, result
backend, job store) is pointed alike at a sentinel:// or rediss:// REDIS_URL. Nothing here
connects: the clients are built and their connection settings read."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import _state as celery_state
from celery.backends.redis import SentinelBackend
from redis.sentinel import SentinelConnectionPool, SentinelManagedConnection

from worker import deps
from worker.celery_app import celery_config, create_app
from worker.config.settings import Settings, load_settings

REDIS_PASSWORD = "m4ster-distinct-pw"
SENTINEL_PASSWORD = "s3ntinel-distinct-pw"
SENTINEL_URL = ";".join(f"sentinel://:{REDIS_PASSWORD}@10.0.0.{n}:2637{n}/4" for n in (1, 2, 3))
SENTINEL_ENV = {
    "REDIS_URL": SENTINEL_URL,
    "REDIS_SENTINEL_MASTER": "lipsync",
    "REDIS_SENTINEL_PASSWORD": SENTINEL_PASSWORD,
}


@pytest.fixture(autouse=True)
def keep_current_app() -> Iterator[None]:
    """Each app built here makes itself Celery's current app; put the previous one back."""
    previous = celery_state.get_current_app()
    yield
    previous.set_current()


@pytest.fixture
def use_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Make deps build its clients from the given environment (and forget them after)."""

    def apply(env: dict[str, str]) -> Settings:
        settings = load_settings(env)
        monkeypatch.setattr(deps, "settings", lambda: settings)
        deps.redis_client.cache_clear()
        return settings

    yield apply
    deps.redis_client.cache_clear()


def pool_kwargs(client: redis.Redis) -> dict[str, Any]:
    return dict(client.connection_pool.connection_kwargs)


def test_a_sentinel_url_gives_a_client_of_the_named_master_with_the_usual_timeouts(
    use_settings: Any,
) -> None:
    use_settings(SENTINEL_ENV)
    client = deps.redis_client()
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "lipsync" and pool.is_master
    assert pool.connection_class is SentinelManagedConnection
    kwargs = pool_kwargs(client)
    assert (kwargs["db"], kwargs["password"]) == (4, REDIS_PASSWORD)
    for name, value in deps.REDIS_CONNECTION_OPTIONS.items():
        assert kwargs[name] == value, name


def test_the_sentinels_are_asked_with_their_own_password_and_bounded_timeouts(
    use_settings: Any,
) -> None:
    use_settings(SENTINEL_ENV)
    sentinels = deps.redis_client().connection_pool.sentinel_manager.sentinels
    assert [
        (s.connection_pool.connection_kwargs["host"], s.connection_pool.connection_kwargs["port"])
        for s in sentinels
    ] == [("10.0.0.1", 26371), ("10.0.0.2", 26372), ("10.0.0.3", 26373)]
    for sentinel in sentinels:
        kwargs = sentinel.connection_pool.connection_kwargs
        assert kwargs["password"] == SENTINEL_PASSWORD
        assert kwargs["socket_timeout"] == kwargs["socket_connect_timeout"] == 10.0


def test_a_redis_url_still_gives_a_plain_client_with_the_usual_timeouts(
    use_settings: Any,
) -> None:
    use_settings({"REDIS_URL": f"redis://:{REDIS_PASSWORD}@cache:6379/2"})
    client = deps.redis_client()
    assert type(client.connection_pool) is redis.ConnectionPool
    kwargs = pool_kwargs(client)
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("cache", 6379, 2)
    for name, value in deps.REDIS_CONNECTION_OPTIONS.items():
        assert kwargs[name] == value, name


def test_broker_and_result_backend_use_the_sentinel_url_and_the_master_name() -> None:
    settings = load_settings(SENTINEL_ENV)
    config = celery_config(settings)
    assert config["broker_url"] == SENTINEL_URL
    first = SENTINEL_URL.split(";")[0]
    assert (
        config["result_backend"]
        == f"{first};sentinel://10.0.0.2:26372/4;sentinel://10.0.0.3:26373/4"
    )
    for name in ("broker_transport_options", "result_backend_transport_options"):
        options = config[name]
        assert options["master_name"] == "lipsync", name
        assert options["sentinel_kwargs"]["password"] == SENTINEL_PASSWORD, name
        assert options["visibility_timeout"] == 2 * 3600, name  # the existing options stay
    assert config["broker_use_ssl"] is None


def test_celery_builds_sentinel_clients_of_the_same_master_database_and_password() -> None:
    app = create_app(load_settings(SENTINEL_ENV))
    backend = app.backend
    assert isinstance(backend, SentinelBackend)
    assert backend.connparams["db"] == 4
    assert backend.connparams["password"] == REDIS_PASSWORD
    assert backend._transport_options["master_name"] == "lipsync"
    with app.connection_for_write() as connection:
        assert connection.transport_cls == "sentinel"
        assert connection.transport_options["master_name"] == "lipsync"
        assert connection.virtual_host == "4"
        # kombu moves to the next sentinel after a failed connection: same database there.
        connection.maybe_switch_next()
        assert connection.hostname == "10.0.0.2" and connection.virtual_host == "4"
    assert REDIS_PASSWORD not in backend.as_uri()


def test_celerys_censored_configuration_shows_neither_password() -> None:
    # What `celery report` and `celery inspect conf` print: Celery masks the password of
    # the first address of a sentinel:// result backend only, so the others carry none.
    app = create_app(load_settings(SENTINEL_ENV))
    shown = app.conf.humanize(with_defaults=False, censored=True)
    assert "sentinel_kwargs" in shown and "10.0.0.3:26373" in shown
    assert REDIS_PASSWORD not in shown and SENTINEL_PASSWORD not in shown
    hosts = [(h["host"], h["port"]) for h in app.backend.connparams["hosts"]]
    assert hosts == [("10.0.0.1", 26371), ("10.0.0.2", 26372), ("10.0.0.3", 26373)]


def test_an_accepted_rediss_url_makes_broker_backend_and_job_store_check_the_certificate(
    use_settings: Any, tmp_path: Path
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("read when connecting")
    url = f"rediss://:{REDIS_PASSWORD}@cache:6380/0?ssl_cert_reqs=required&ssl_ca_certs={ca}"
    app = create_app(use_settings({"REDIS_URL": url}))
    with app.connection_for_write() as connection:
        assert connection.ssl == {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": str(ca)}
    assert app.backend.connparams["ssl_cert_reqs"] == ssl.CERT_REQUIRED
    assert app.backend.connparams["ssl_ca_certs"] == str(ca)
    client = deps.redis_client()
    assert issubclass(client.connection_pool.connection_class, redis.SSLConnection)
    assert pool_kwargs(client)["ssl_cert_reqs"] == "required"
    assert pool_kwargs(client)["ssl_ca_certs"] == str(ca)


def test_a_rediss_url_without_ssl_cert_reqs_requires_the_certificate_everywhere(
    use_settings: Any,
) -> None:
    # kombu alone would check no certificate, and Celery's backend would refuse the URL.
    app = create_app(use_settings({"REDIS_URL": "rediss://cache:6380/0"}))
    with app.connection_for_write() as connection:
        assert connection.ssl == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    assert app.backend.connparams["ssl_cert_reqs"] == ssl.CERT_REQUIRED
    client = deps.redis_client()
    connection = client.connection_pool.make_connection()
    assert isinstance(connection, redis.SSLConnection)
    assert connection.cert_reqs == ssl.CERT_REQUIRED


def test_ssl_cert_reqs_none_in_a_rediss_url_is_what_every_client_uses() -> None:
    app = create_app(load_settings({"REDIS_URL": "rediss://cache:6380/0?ssl_cert_reqs=none"}))
    with app.connection_for_write() as connection:
        assert connection.ssl == {"ssl_cert_reqs": ssl.CERT_NONE}
    assert app.backend.connparams["ssl_cert_reqs"] == ssl.CERT_NONE


def test_the_archiver_cuts_off_downloads_under_the_configured_floor(use_settings: Any) -> None:
    use_settings(
        {
            "ARCHIVE_BUCKET": "b",
            "DOWNLOAD_MIN_BYTES_PER_SECOND": "1000",
            "DOWNLOAD_RATE_WINDOW_SECONDS": "8",
        }
    )
    deps.archiver.cache_clear()
    try:
        archiver = deps.archiver()
        assert (archiver._min_rate, archiver._rate_window) == (1000.0, 8.0)
    finally:
        deps.archiver.cache_clear()
