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
