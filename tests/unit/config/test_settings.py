"""Tests of worker.config.settings: defaults, validation of every variable, and secret hygiene."""

from __future__ import annotations

import pytest

from worker.config.settings import (
    ARCHIVE_DEFAULT_ALLOWED_HOSTS,
    ARCHIVE_DEFAULT_PREFIX,
    ConfigError,
    Secret,
    Settings,
    load_settings,
)

API_KEY = "sk-live-Zq9distinctApiKey"
CLIENT_SECRET = "cs-Xw7distinctClientSecret"
REDIS_PASSWORD = "hunter2"

NUMERIC_VARS = (
    "DOWNLOAD_RATE_WINDOW_SECONDS",
    "POLL_INITIAL_SECONDS",
    "POLL_MAX_SECONDS",
    "POLL_TIMEOUT_SECONDS",
    "ARCHIVE_MAX_BYTES",
    "JOB_RETENTION_DAYS",
    "SUBMIT_UNKNOWN_WAIT_SECONDS",
)


def load_error(env: dict[str, str]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    return info.value


# --- defaults ------------------------------------------------------------------------------


def test_an_empty_environment_gives_the_documented_defaults() -> None:
    settings = load_settings({})
    assert settings == Settings()
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.akool_base_url == "https://openapi.akool.com"
    assert settings.akool_api_key is None
    assert settings.akool_client_id is None
    assert settings.akool_client_secret is None
    assert settings.archive_bucket is None
    assert settings.archive_prefix == ARCHIVE_DEFAULT_PREFIX == "lipsync/"
    assert settings.s3_endpoint_url is None
    assert settings.archive_allowed_hosts == ARCHIVE_DEFAULT_ALLOWED_HOSTS
    assert settings.archive_max_bytes == 1024**3
    assert settings.poll_initial_seconds == 5.0
    assert settings.poll_max_seconds == 60.0
    assert settings.poll_timeout_seconds == 2 * 3600.0
    assert settings.job_retention_seconds == 30 * 24 * 3600


def test_blank_values_count_as_unset() -> None:
    env = {name: "   " for name in NUMERIC_VARS}
    env.update({"REDIS_URL": "", "AKOOL_API_KEY": " ", "ARCHIVE_BUCKET": ""})
    assert load_settings(env) == Settings()


def test_valid_values_are_read() -> None:
    settings = load_settings(
        {
            "POLL_INITIAL_SECONDS": "0.5",
            "POLL_MAX_SECONDS": "2",
            "POLL_TIMEOUT_SECONDS": "30",
            "ARCHIVE_MAX_BYTES": "1048576",
            "JOB_RETENTION_DAYS": "9",
            "ARCHIVE_BUCKET": "videos",
            "AKOOL_API_KEY": API_KEY,
        }
    )
    assert settings.poll_initial_seconds == 0.5
    assert settings.poll_max_seconds == 2.0
    assert settings.poll_timeout_seconds == 30.0
    assert settings.archive_max_bytes == 1048576
    assert isinstance(settings.archive_max_bytes, int)
    assert settings.job_retention_seconds == 9 * 86400
    assert settings.archive_bucket == "videos"
    assert settings.akool_api_key == Secret(API_KEY)


# --- numbers -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NUMERIC_VARS)
@pytest.mark.parametrize("raw", ["abc", "5s", "1,5", "-1", "-0.5", "nan", "inf", "-inf", "1e400"])
def test_a_numeric_variable_rejects_non_numbers_and_negatives_naming_itself(
    name: str, raw: str
) -> None:
    error = load_error({name: raw})
    assert name in str(error)


@pytest.mark.parametrize("name", NUMERIC_VARS)
def test_a_numeric_variable_rejects_zero(name: str) -> None:
    assert name in str(load_error({name: "0"}))


def test_an_unknown_submit_waits_an_hour_for_its_callback_unless_told_otherwise() -> None:
    assert load_settings({}).submit_unknown_wait_seconds == 3600.0
    assert load_settings({"SUBMIT_UNKNOWN_WAIT_SECONDS": "90"}).submit_unknown_wait_seconds == 90.0


def test_poll_max_below_poll_initial_is_rejected_naming_both() -> None:
    error = load_error({"POLL_INITIAL_SECONDS": "10", "POLL_MAX_SECONDS": "5"})
    assert "POLL_MAX_SECONDS" in str(error)
    assert "POLL_INITIAL_SECONDS" in str(error)


def test_poll_max_equal_to_poll_initial_is_accepted() -> None:
    settings = load_settings({"POLL_INITIAL_SECONDS": "7", "POLL_MAX_SECONDS": "7"})
    assert settings.poll_initial_seconds == settings.poll_max_seconds == 7.0


def test_poll_max_above_the_broker_limit_is_rejected() -> None:
    assert "POLL_MAX_SECONDS" in str(load_error({"POLL_MAX_SECONDS": "901"}))


def test_job_retention_under_one_day_is_rejected() -> None:
    assert "JOB_RETENTION_DAYS" in str(load_error({"JOB_RETENTION_DAYS": "0.5"}))


# --- URLs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/0", "rediss://cache.example.com:6380/1", "redis://h"]
)
def test_redis_url_accepts_redis_schemes(url: str) -> None:
    assert load_settings({"REDIS_URL": url}).redis_url == url


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:6379", "127.0.0.1:6379", "redis:", "redis://", "memcached://h"]
)
def test_redis_url_with_another_scheme_or_no_host_is_rejected(url: str) -> None:
    assert "REDIS_URL" in str(load_error({"REDIS_URL": url}))


def test_redis_url_accepts_a_unix_socket() -> None:
    url = "unix:///run/redis/redis.sock?db=0"
    assert load_settings({"REDIS_URL": url}).redis_url == url


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080", "https://openapi.akool.com/"])
def test_akool_base_url_accepts_http_and_https(url: str) -> None:
    assert load_settings({"AKOOL_BASE_URL": url}).akool_base_url == url


@pytest.mark.parametrize("url", ["ftp://openapi.akool.com", "openapi.akool.com", "https://"])
def test_akool_base_url_with_another_scheme_or_no_host_is_rejected(url: str) -> None:
    assert "AKOOL_BASE_URL" in str(load_error({"AKOOL_BASE_URL": url}))


def test_s3_endpoint_url_is_optional_and_accepts_http() -> None:
    assert load_settings({}).s3_endpoint_url is None
    url = "http://127.0.0.1:9000"
    assert load_settings({"S3_ENDPOINT_URL": url}).s3_endpoint_url == url


@pytest.mark.parametrize("url", ["s3://bucket", "127.0.0.1:9000", "file:///tmp/s3"])
def test_s3_endpoint_url_with_another_scheme_is_rejected(url: str) -> None:
    assert "S3_ENDPOINT_URL" in str(load_error({"S3_ENDPOINT_URL": url}))


def test_an_unparsable_redis_url_is_a_config_error_naming_the_variable() -> None:
    assert "REDIS_URL" in str(load_error({"REDIS_URL": "redis://[::1"}))


# --- Akool credentials -----------------------------------------------------------------------


def test_client_id_without_secret_is_rejected_naming_the_secret() -> None:
    error = load_error({"AKOOL_CLIENT_ID": "my-client"})
    assert "AKOOL_CLIENT_SECRET is not set" in str(error)


def test_client_secret_without_id_is_rejected_naming_the_id() -> None:
    error = load_error({"AKOOL_CLIENT_SECRET": CLIENT_SECRET})
    assert "AKOOL_CLIENT_ID is not set" in str(error)
    assert CLIENT_SECRET not in str(error)


def test_client_id_and_secret_together_are_accepted_and_the_secret_is_wrapped() -> None:
    settings = load_settings({"AKOOL_CLIENT_ID": "my-client", "AKOOL_CLIENT_SECRET": CLIENT_SECRET})
    assert settings.akool_client_id == "my-client"
    assert isinstance(settings.akool_client_secret, Secret)
    assert settings.akool_client_secret.reveal() == CLIENT_SECRET


# --- archive ---------------------------------------------------------------------------------


def test_allowed_hosts_are_split_trimmed_and_lowercased() -> None:
    settings = load_settings({"ARCHIVE_ALLOWED_HOSTS": " Files.Example.com , *.CDN.net ,, "})
    assert settings.archive_allowed_hosts == ("files.example.com", "*.cdn.net")


def test_allowed_hosts_with_no_host_listed_is_rejected() -> None:
    assert "ARCHIVE_ALLOWED_HOSTS" in str(load_error({"ARCHIVE_ALLOWED_HOSTS": " , ,"}))


@pytest.mark.parametrize("prefix", ["..", "../x/", "a/../b/", "a/..", "a\nb/", "a\x00/"])
def test_archive_prefix_that_could_leave_its_folder_is_rejected(prefix: str) -> None:
    assert "ARCHIVE_PREFIX" in str(load_error({"ARCHIVE_PREFIX": prefix}))


@pytest.mark.parametrize(
    ("raw", "expected"), [("videos/", "videos/"), ("/videos/2024/", "videos/2024/"), ("", "")]
)
def test_archive_prefix_is_kept_without_a_leading_slash(raw: str, expected: str) -> None:
    assert load_settings({"ARCHIVE_PREFIX": raw}).archive_prefix == expected


def test_archive_prefix_with_dots_inside_a_name_is_accepted() -> None:
    assert load_settings({"ARCHIVE_PREFIX": "v1..2/"}).archive_prefix == "v1..2/"


# --- requirements ----------------------------------------------------------------------------


def test_require_akool_auth_without_credentials_names_the_variables() -> None:
    with pytest.raises(ConfigError) as info:
        Settings().require_akool_auth()
    message = str(info.value)
    assert "AKOOL_API_KEY" in message
    assert "AKOOL_CLIENT_ID" in message
    assert "AKOOL_CLIENT_SECRET" in message


def test_require_akool_auth_accepts_an_api_key_or_a_client_pair() -> None:
    load_settings({"AKOOL_API_KEY": API_KEY}).require_akool_auth()
    load_settings(
        {"AKOOL_CLIENT_ID": "c", "AKOOL_CLIENT_SECRET": CLIENT_SECRET}
    ).require_akool_auth()


def test_require_archive_without_a_bucket_names_archive_bucket() -> None:
    with pytest.raises(ConfigError, match="ARCHIVE_BUCKET"):
        Settings().require_archive()


def test_require_archive_returns_the_bucket() -> None:
    assert load_settings({"ARCHIVE_BUCKET": "videos"}).require_archive() == "videos"


def test_validate_for_worker_needs_both_auth_and_bucket() -> None:
    with pytest.raises(ConfigError, match="ARCHIVE_BUCKET"):
        load_settings({"AKOOL_API_KEY": API_KEY}).validate_for_worker()
    with pytest.raises(ConfigError, match="AKOOL_API_KEY"):
        load_settings({"ARCHIVE_BUCKET": "videos"}).validate_for_worker()
    load_settings({"AKOOL_API_KEY": API_KEY, "ARCHIVE_BUCKET": "videos"}).validate_for_worker()


# --- secrets ---------------------------------------------------------------------------------


def test_secret_shows_a_mask_and_reveals_on_request() -> None:
    secret = Secret(API_KEY)
    assert API_KEY not in repr(secret)
    assert API_KEY not in str(secret)
    assert API_KEY not in f"{secret}"
    assert secret.reveal() == API_KEY
    assert secret == Secret(API_KEY)
    assert secret != Secret("other")


def test_api_key_and_client_secret_never_appear_in_the_settings_repr() -> None:
    settings = load_settings(
        {
            "AKOOL_API_KEY": API_KEY,
            "AKOOL_CLIENT_ID": "my-client",
            "AKOOL_CLIENT_SECRET": CLIENT_SECRET,
        }
    )
    assert API_KEY not in repr(settings)
    assert CLIENT_SECRET not in repr(settings)
    assert API_KEY not in str(settings)


def test_redis_password_never_appears_in_the_settings_repr() -> None:
    settings = load_settings({"REDIS_URL": f"redis://:{REDIS_PASSWORD}@cache.internal:6379/0"})
    assert REDIS_PASSWORD not in repr(settings)


@pytest.mark.parametrize(
    "env",
    [
        {"POLL_MAX_SECONDS": "-1"},
        {"POLL_INITIAL_SECONDS": "9", "POLL_MAX_SECONDS": "3"},
        {"AKOOL_CLIENT_ID": "c"},
        {"ARCHIVE_PREFIX": "../x"},
        {"AKOOL_BASE_URL": "ftp://x"},
        {"REDIS_URL": f"http://:{REDIS_PASSWORD}@cache.internal:6379/0"},
        {"REDIS_URL": f"memcached://user:{REDIS_PASSWORD}@cache.internal"},
        {"AKOOL_BASE_URL": f"ftp://user:{REDIS_PASSWORD}@akool.example"},
        {"S3_ENDPOINT_URL": f"s3://user:{REDIS_PASSWORD}@minio.internal"},
    ],
)
def test_no_config_error_message_contains_a_secret(env: dict[str, str]) -> None:
    full = {"AKOOL_API_KEY": API_KEY, **env}
    if "AKOOL_CLIENT_ID" not in env:
        full.update({"AKOOL_CLIENT_ID": "c", "AKOOL_CLIENT_SECRET": CLIENT_SECRET})
    error = load_error(full)
    for secret in (API_KEY, CLIENT_SECRET, REDIS_PASSWORD):
        assert secret not in str(error)
        assert secret not in repr(error)


@pytest.mark.parametrize(
    "url",
    [f"redis:/:{REDIS_PASSWORD}@cache.internal", f"redis//:{REDIS_PASSWORD}@cache.internal"],
)
def test_a_malformed_redis_url_error_does_not_echo_its_password(url: str) -> None:
    assert REDIS_PASSWORD not in str(load_error({"REDIS_URL": url}))


def test_a_redis_url_with_a_password_but_no_host_is_rejected_without_echoing_it() -> None:
    error = load_error({"REDIS_URL": f"redis://:{REDIS_PASSWORD}@"})
    assert "REDIS_URL" in str(error)
    assert REDIS_PASSWORD not in str(error)


def test_a_retention_shorter_than_a_job_can_live_is_refused_naming_the_variables() -> None:
    error = str(load_error({"JOB_RETENTION_DAYS": "1"}))
    assert "JOB_RETENTION_DAYS" in error
    assert "POLL_TIMEOUT_SECONDS" in error
    assert "7-day" in error


def test_the_shortest_retention_is_the_poll_timeout_plus_eight_days() -> None:
    env = {"POLL_TIMEOUT_SECONDS": "86400"}
    assert load_settings({**env, "JOB_RETENTION_DAYS": "9"}).job_retention_seconds == 9 * 86400
    assert "JOB_RETENTION_DAYS" in str(load_error({**env, "JOB_RETENTION_DAYS": "8.9"}))


def test_notify_allowed_hosts_default_to_any_public_host_and_are_read_lowercased() -> None:
    assert load_settings({}).notify_allowed_hosts == ("*",)
    hosts = load_settings({"NOTIFY_ALLOWED_HOSTS": "App.Example.com, 127.0.0.1"})
    assert hosts.notify_allowed_hosts == ("app.example.com", "127.0.0.1")


# --- Redis Sentinel and rediss:// ---------------------------------------------------------------

SENTINEL_URL = f"sentinel://:{REDIS_PASSWORD}@s1:26379/2;sentinel://:{REDIS_PASSWORD}@s2:26380/2"
SENTINEL_PASSWORD = "s3ntinel-distinct-pw"


def test_a_sentinel_url_with_its_master_name_is_read_into_addresses_db_and_secrets() -> None:
    settings = load_settings(
        {
            "REDIS_URL": SENTINEL_URL,
            "REDIS_SENTINEL_MASTER": "mymaster",
            "REDIS_SENTINEL_PASSWORD": SENTINEL_PASSWORD,
        }
    )
    assert settings.redis_url == SENTINEL_URL  # kombu's and Celery's URL, as it is
    sentinel = settings.redis_sentinel
    assert sentinel is not None
    assert sentinel.addresses == (("s1", 26379), ("s2", 26380))
    assert (sentinel.master, sentinel.db, sentinel.username) == ("mymaster", 2, None)
    assert sentinel.password == REDIS_PASSWORD
    assert sentinel.sentinel_password == SENTINEL_PASSWORD
    for secret in (REDIS_PASSWORD, SENTINEL_PASSWORD):
        assert secret not in repr(settings)


def test_sentinels_without_a_database_mean_database_0() -> None:
    env = {"REDIS_URL": "sentinel://s1:26379;sentinel://s2:26380/0", "REDIS_SENTINEL_MASTER": "m"}
    sentinel = load_settings(env).redis_sentinel
    assert sentinel is not None
    assert sentinel.addresses == (("s1", 26379), ("s2", 26380))
    assert sentinel.db == 0 and sentinel.password is None


def test_a_sentinel_without_a_port_is_refused_since_kombu_and_celery_default_differently() -> None:
    # kombu would ask s2:26379, Celery's result backend s2:6379.
    env = {"REDIS_URL": "sentinel://s1:26379/0;sentinel://s2/0", "REDIS_SENTINEL_MASTER": "m"}
    assert "sentinel 2 must be sentinel://host:port" in str(load_error(env))


def test_a_plain_redis_url_has_no_sentinel_settings() -> None:
    assert load_settings({"REDIS_URL": "redis://h:6379/0"}).redis_sentinel is None


def test_a_sentinel_url_without_redis_sentinel_master_is_refused_naming_it() -> None:
    error = str(load_error({"REDIS_URL": SENTINEL_URL}))
    assert "REDIS_SENTINEL_MASTER is not set" in error
    assert REDIS_PASSWORD not in error


@pytest.mark.parametrize("name", ["REDIS_SENTINEL_MASTER", "REDIS_SENTINEL_PASSWORD"])
def test_a_sentinel_setting_without_a_sentinel_url_is_refused_naming_both(name: str) -> None:
    error = str(load_error({"REDIS_URL": "redis://h:6379/0", name: "x"}))
    assert name in error and "REDIS_URL" in error


@pytest.mark.parametrize(
    "url",
    [
        # kombu reads the database and password of the sentinel it is connected through,
        # Celery's result backend those of the first: they must agree.
        "sentinel://s1:26379;sentinel://s2:26379/3",
        "sentinel://s1:26379/1;sentinel://s2:26379/2",
        f"sentinel://:{REDIS_PASSWORD}@s1:26379/0;sentinel://s2:26379/0",
    ],
)
def test_sentinels_naming_different_databases_or_passwords_are_refused(url: str) -> None:
    error = str(load_error({"REDIS_URL": url, "REDIS_SENTINEL_MASTER": "m"}))
    assert "REDIS_URL" in error and "same database" in error
    assert REDIS_PASSWORD not in error


@pytest.mark.parametrize(
    "url",
    [
        f"sentinel://:{REDIS_PASSWORD}@s1:26379/0;redis://:{REDIS_PASSWORD}@s2:6379/0",
        f"sentinel://:{REDIS_PASSWORD}@s1:26379/0;",
        f"sentinel://:{REDIS_PASSWORD}@s1:port/0",
        f"sentinel://:{REDIS_PASSWORD}@s1:26379/0?ssl_cert_reqs=required",
        f"sentinel://:{REDIS_PASSWORD}@s1:26379/0; sentinel://:{REDIS_PASSWORD}@s2:26379/0",
        f"sentinel://:{REDIS_PASSWORD}@s1:26379/db",
        f"sentinel://:{REDIS_PASSWORD}@:26379/0",
    ],
)
def test_a_malformed_sentinel_url_is_refused_naming_redis_url_without_its_password(
    url: str,
) -> None:
    error = load_error({"REDIS_URL": url, "REDIS_SENTINEL_MASTER": "m"})
    assert "REDIS_URL" in str(error)
    assert REDIS_PASSWORD not in str(error) and REDIS_PASSWORD not in repr(error)


def test_a_rediss_url_with_certificate_options_is_accepted_as_it_is(tmp_path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not parsed here")
    url = f"rediss://:{REDIS_PASSWORD}@cache:6380/0?ssl_cert_reqs=required&ssl_ca_certs={ca}"
    assert load_settings({"REDIS_URL": url}).redis_url == url


@pytest.mark.parametrize("value", ["CERT_REQUIRED", "REQUIRED", "yes", ""])
def test_ssl_cert_reqs_must_be_spelled_as_all_three_clients_read_it(value: str) -> None:
    # kombu and Celery also take CERT_REQUIRED, which redis-py (the job store) refuses.
    url = f"rediss://:{REDIS_PASSWORD}@cache:6380/0?ssl_cert_reqs={value}"
    error = str(load_error({"REDIS_URL": url}))
    assert "REDIS_URL's ssl_cert_reqs must be required, optional or none" in error
    assert REDIS_PASSWORD not in error


@pytest.mark.parametrize(
    "url",
    [
        "redis://cache:6379/0?ssl_cert_reqs=required",  # TLS options on a plain connection
        "rediss://cache:6380/0?ssl_cert_reqs=required&socket_timeout=5",  # kombu: TypeError
        "rediss://cache:6380/0?ssl_cert_reqs=required&ssl_cert_reqs=none",
        "rediss://cache:6380/0?ssl_cert_reqs=required&ssl_ca_certs=/nonexistent/ca.pem",
    ],
)
def test_redis_url_options_the_broker_cannot_use_are_refused_naming_redis_url(url: str) -> None:
    assert "REDIS_URL" in str(load_error({"REDIS_URL": url}))


def test_a_question_mark_in_an_unencoded_password_is_refused_without_echoing_any_of_it() -> None:
    # urlsplit takes what follows the `?` for options: their names are the password's rest.
    head, tail = REDIS_PASSWORD[:3], REDIS_PASSWORD[3:]
    error = str(load_error({"REDIS_URL": f"rediss://user:{head}?{tail}@cache:6380/0"}))
    assert "REDIS_URL" in error
    assert head not in error and tail not in error


def test_the_gone_grace_and_the_download_floor_are_read_in_their_units() -> None:
    settings = load_settings(
        {
            "ARCHIVE_GONE_GRACE_SECONDS": "120",
            "DOWNLOAD_MIN_BYTES_PER_SECOND": "0",
            "DOWNLOAD_RATE_WINDOW_SECONDS": "30",
        }
    )
    assert settings.archive_gone_grace_seconds == 120.0
    assert settings.download_min_bytes_per_second == 0.0  # the floor off
    assert settings.download_rate_window_seconds == 30.0
    assert Settings().archive_gone_grace_seconds == 3600.0
    with pytest.raises(ConfigError, match="DOWNLOAD_RATE_WINDOW_SECONDS"):
        load_settings({"DOWNLOAD_RATE_WINDOW_SECONDS": "0.5"})
