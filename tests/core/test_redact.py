"""The one redaction: secrets by shape and by value, in text, data and log records."""
from __future__ import annotations

import json
import logging
import sys
import uuid

from pydantic import SecretStr

from core.config import Settings
from core.redact import RedactingFilter, redact, redact_data, remember, remember_assignments, remember_settings


def a_secret() -> str:
    return f"Pw-{uuid.uuid4().hex[:12]}"


def test_url_passwords_and_secret_named_values_are_masked_by_their_shape():
    assert redact("cannot reach redis://:abc@127.0.0.1:6379/2") == "cannot reach redis://:***@127.0.0.1:6379/2"
    assert redact("http://elastic:pw@es:9200 refused") == "http://elastic:***@es:9200 refused"
    assert redact("  MYSQL_PASSWORD=abc") == "  MYSQL_PASSWORD=***"
    assert redact("    secret_key: abc") == "    secret_key: ***"
    assert redact("minio: {secret_key: abc, endpoint: x}") == "minio: {secret_key: ***, endpoint: x}"
    assert redact("see https://example.org/a:b@c and https://host:8080/x") == (
        "see https://example.org/a:b@c and https://host:8080/x")


def test_a_known_secret_is_masked_wherever_it_appears_also_url_quoted():
    secret = a_secret() + "/+"
    remember([SecretStr(secret)])
    assert redact(f"ValueError: bad value {secret!r}") == "ValueError: bad value '***'"
    assert secret not in redact(f"url ends in {secret.replace('/', '%2F').replace('+', '%2B')}")


def test_the_settings_secrets_are_remembered_but_a_broker_url_counts_by_its_password():
    password, token = a_secret(), a_secret()
    settings = Settings(broker={"url": f"redis://:{password}@127.0.0.1:6379/2"}, notify={"urls": [f"ntfy://{token}"]})
    remember_settings(settings)
    assert redact(f"password {password} and target ntfy://{token}") == "password *** and target ***"
    assert redact("redis://127.0.0.1:6379/2") == "redis://127.0.0.1:6379/2"


def test_the_values_of_secret_lines_of_a_file_that_does_not_parse_are_remembered():
    secret = a_secret()
    remember_assignments(f"mysql:\n  password: {secret}: [unclosed\n")
    assert redact(f"found {secret}") == "found ***"


def test_where_a_secret_is_kept_is_no_secret():
    path = f"/etc/ragflow-backup/{uuid.uuid4().hex}.pass"
    remember_assignments(f"offsite:\n  password_file: {path}\n")
    assert redact(f"  password_file: {path}") == f"  password_file: {path}"


def test_json_stays_json():
    text = '{\n  "secret_key": "abc",\n  "token": "def",\n  "url": "redis://:pw@h/0"\n}'
    assert json.loads(redact(text)) == {"secret_key": "***", "token": "***", "url": "redis://:***@h/0"}


def test_data_keeps_its_keys_and_masks_its_strings():
    assert redact_data({"error": "redis://:pw@h/0", "n": 1, "list": ["x://u:p@h"]}) == {
        "error": "redis://:***@h/0", "n": 1, "list": ["x://u:***@h"]}


def test_a_log_record_is_redacted_with_its_arguments_and_traceback():
    secret = a_secret()
    remember([secret])
    record = logging.LogRecord("t", logging.ERROR, __file__, 1, "connect to %s failed", (f"db:{secret}",), None)
    try:
        raise RuntimeError(f"refused: {secret}")
    except RuntimeError:
        record.exc_info = sys.exc_info()
    RedactingFilter().filter(record)
    text = logging.Formatter().format(record)
    assert secret not in text
    assert "connect to db:*** failed" in text and "RuntimeError: refused: ***" in text
