"""The suite's leak check finds a secret wherever it was written, and names only the place."""

from tests.support.leaks import leaks_in


def test_a_secret_anywhere_in_a_text_is_found_and_only_its_place_is_named():
    texts = [("log a", "redeemed user=u1"), ("log b", "oops rt-SECRETVALUE123 in a line"),
             ("output c", "nothing here")]
    assert leaks_in(texts, ["rt-SECRETVALUE123"]) == ["log b"]


def test_clean_texts_have_no_leaks():
    assert leaks_in([("log", "redeemed <redacted>")], ["rt-SECRETVALUE123"]) == []


def test_a_secret_glued_to_other_text_or_inside_a_jwt_like_run_is_found():
    secret = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    texts = [("a", f"Authorization=Bearer {secret}"), ("b", f"token={secret}."),
             ("c", f'{{"refresh_token": "{secret}"}}'), ("d", "Bearer eyJhbGciOiJSUzI1NiJ9.x")]
    assert leaks_in(texts, [secret]) == ["a", "b", "c"]


def test_what_the_telemetry_exporters_got_is_searched_too():
    # A provider of its own: the session's exporters feed the real check at the end.
    import logging

    from opentelemetry.instrumentation.logging.handler import LoggingHandler
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from tests.support.telemetry import drain, metric_texts

    secret = "rt-SECRETVALUE123"
    spans, logs, reader = InMemorySpanExporter(), InMemoryLogRecordExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    tracer = tracer_provider.get_tracer("leaky")
    with tracer.start_as_current_span("in an attribute") as span:
        span.set_attribute("token", secret)
    with tracer.start_as_current_span("in an event") as span:
        span.add_event("exception", {"exception.message": f"refused {secret}"})
    handler = LoggingHandler(logger_provider=logger_provider)
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "plain", (), None)
    handler.emit(record)
    record.assertion = secret
    handler.emit(record)
    MeterProvider(metric_readers=[reader]).get_meter("leaky").create_counter("c").add(
        1, {"who": secret})

    found = leaks_in(drain(spans, logs) + metric_texts(reader), [secret])

    assert found == ["exported log record", "metric c", "span in an attribute",
                     "span in an event"]
