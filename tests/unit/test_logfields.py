"""Fields logged as extra attributes show on the dev host's console, in the message text."""

import json
import logging

from tokenvault.dev.logfields import FieldsInMessage, install


def record(msg="redeemed", args=(), **extra) -> logging.LogRecord:
    made = logging.LogRecord("tokenvault.vault", logging.INFO, __file__, 1, msg, args, None)
    made.__dict__.update(extra)
    return made


def test_named_fields_are_appended_to_the_text_as_json():
    line = record(tenant_id="t1", user_id="u1", rotated=True, sweep={"not": "named"})
    FieldsInMessage().filter(line)
    text, fields = line.getMessage().split(" ", 1)
    assert text == "redeemed"
    assert json.loads(fields) == {"tenant_id": "t1", "user_id": "u1", "rotated": True}


def test_arguments_are_formatted_first_and_fields_are_appended_once():
    line = record("request failed: %s", ("The bearer token is missing.",), code="invalid_token")
    FieldsInMessage().filter(line)
    FieldsInMessage().filter(line)  # a second handler
    assert line.getMessage() == 'request failed: The bearer token is missing. {"code": "invalid_token"}'


def test_a_line_without_fields_is_left_alone():
    line = record("plain")
    FieldsInMessage().filter(line)
    assert line.getMessage() == "plain"


def test_install_puts_one_filter_on_each_handler():
    logger = logging.getLogger("tokenvault.test.logfields")
    handler = logging.NullHandler()
    logger.addHandler(handler)
    try:
        install(logger)
        install(logger)
        assert [type(f) for f in handler.filters] == [FieldsInMessage]
    finally:
        logger.removeHandler(handler)


def test_an_audit_record_is_left_as_it_is_its_message_is_its_json():
    line = logging.LogRecord("tokenvault.audit", logging.INFO, __file__, 1, 'audit {"a":1}', (), None)
    line.__dict__.update(tenant_id="t1", correlation_id="c1")
    FieldsInMessage().filter(line)
    assert line.getMessage() == 'audit {"a":1}'
