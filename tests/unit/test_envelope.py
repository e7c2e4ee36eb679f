"""The envelope format of docs/design.md, held to the letter: version 2 written, version 1
still read."""

import base64
import hashlib
import hmac
import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tokenvault.envelope import Binding, _seal_v1, _seal_v2, seal, unseal
from tokenvault.errors import CiphertextInvalid, TenantKeyInvalid
from tokenvault.sensitive import Sensitive

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
USER = "00000000-0000-0000-0000-0000000000a1"
CLIENT = "11111111-2222-3333-4444-555555555555"
VERSION = "0123456789abcdef0123456789abcdef"
TOKEN = Sensitive("0.AXoA-refresh-token-éü-" + "x" * 300)
KEY = Sensitive(bytes(range(32)))
BINDING = Binding(TENANT, USER, CLIENT, VERSION)


def test_round_trip():
    assert unseal(KEY, seal(KEY, TOKEN, BINDING), BINDING) == TOKEN


def test_layout_is_format_byte_salt_nonce_ciphertext_tag():
    blob = seal(KEY, TOKEN, BINDING)
    assert blob[0] == 0x02
    assert len(blob) == 1 + 16 + 12 + len(TOKEN.reveal().encode("utf-8")) + 16


def test_salt_and_nonce_are_random():
    one, two = seal(KEY, TOKEN, BINDING), seal(KEY, TOKEN, BINDING)
    assert one[1:17] != two[1:17] and one[17:29] != two[17:29]


# Known-answer vectors, computed once from docs/design.md's layouts with the cryptography
# package's AESGCM and HKDF alone (not with seal), and written out so no change to the envelope
# code can move them. Version 1 (no longer written, still read):
#   0x01 || nonce || AESGCM(KAT_KEY).encrypt(nonce, UTF-8 token, associated data)
KAT_KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
KAT_NONCE = bytes.fromhex("cafebabefacedbaddecaf888")
KAT_TOKEN = "0.AXoA-rt-é"  # 12 bytes in UTF-8
KAT_BINDING = Binding(tenant_id="72f988bf-86f1-41af-91ab-2d7cd011db47",
                      user_id="00000000-0000-0000-0000-0000000000a1",
                      client_id="11111111-2222-3333-4444-555555555555",
                      key_version="0123456789abcdef0123456789abcdef")
KAT_AAD = (b"tokenvault.v1\n72f988bf-86f1-41af-91ab-2d7cd011db47\n00000000-0000-0000-0000-0000000000a1\n"
           b"11111111-2222-3333-4444-555555555555\n0123456789abcdef0123456789abcdef")
KAT_BLOB = bytes.fromhex(
    "01"                                  # format
    "cafebabefacedbaddecaf888"            # nonce
    "ba8de17ec53b626932269e74"            # ciphertext of the 12 token bytes
    "969827654fd7c4a279dbb506c625be14")   # tag


# Version 2 (written):
#   record key = HKDF-SHA256(KAT_KEY, salt, info "tokenvault.v2 record key", 32 bytes)
#   0x02 || salt || nonce || AESGCM(record key).encrypt(nonce, UTF-8 token, associated data v2)
KAT_SALT = bytes.fromhex("5a17ed0f5a17ed0f5a17ed0f5a17ed0f")
KAT_RECORD_KEY = bytes.fromhex("b9459bfbed2dc3e33ac8619431ca1814e26479aea16393feec7c6883e8da3cd0")
KAT_AAD_V2 = KAT_AAD.replace(b"tokenvault.v1", b"tokenvault.v2")
KAT_BLOB_V2 = bytes.fromhex(
    "02"                                  # format
    "5a17ed0f5a17ed0f5a17ed0f5a17ed0f"    # salt
    "cafebabefacedbaddecaf888"            # nonce
    "a1e2f876b766e5ecbc98ceba"            # ciphertext of the 12 token bytes
    "3103eb03425a17dfcff16743ba5cf36f")   # tag


def test_the_binding_is_the_documented_associated_data():
    assert KAT_BINDING.associated_data(1) == KAT_AAD
    assert KAT_BINDING.associated_data() == KAT_BINDING.associated_data(2) == KAT_AAD_V2


def test_seal_with_a_fixed_salt_and_nonce_gives_the_known_answer():
    assert _seal_v2(Sensitive(KAT_KEY), Sensitive(KAT_TOKEN), KAT_BINDING, KAT_SALT,
                    KAT_NONCE) == KAT_BLOB_V2


def test_unseal_opens_the_known_answers_of_both_versions():
    assert unseal(Sensitive(KAT_KEY), KAT_BLOB_V2, KAT_BINDING).reveal() == KAT_TOKEN
    assert unseal(Sensitive(KAT_KEY), KAT_BLOB, KAT_BINDING).reveal() == KAT_TOKEN


def test_a_version_1_envelope_is_what_it_was():
    assert _seal_v1(Sensitive(KAT_KEY), Sensitive(KAT_TOKEN), KAT_BINDING, KAT_NONCE) == KAT_BLOB


def test_seal_takes_no_nonce():
    with pytest.raises(TypeError):
        seal(KEY, TOKEN, BINDING, bytes(12))
    with pytest.raises(TypeError):
        seal(KEY, TOKEN, BINDING, _nonce=bytes(12))


@pytest.mark.parametrize("size", [0, 8, 11, 13, 16])
def test_a_nonce_of_another_size_is_refused(size):
    with pytest.raises(ValueError, match="12 bytes"):
        _seal_v2(KEY, TOKEN, BINDING, bytes(16), bytes(size))
    with pytest.raises(ValueError, match="12 bytes"):
        _seal_v1(KEY, TOKEN, BINDING, bytes(size))


@pytest.mark.parametrize("size", [0, 12, 15, 17, 32])
def test_a_salt_of_another_size_is_refused(size):
    with pytest.raises(ValueError, match="16 bytes"):
        _seal_v2(KEY, TOKEN, BINDING, bytes(size), bytes(12))


def test_an_independent_implementation_decrypts_a_stored_blob():
    """The format is a contract: a few lines built from docs/design.md alone must open it —
    here HKDF (RFC 5869) written out with the standard library's HMAC."""
    blob = seal(KEY, TOKEN, BINDING)
    stored = base64.b64encode(blob).decode()  # as it might be exported from the table

    raw = base64.b64decode(stored)
    assert raw[0] == 2
    salt, nonce, body = raw[1:17], raw[17:29], raw[29:]
    prk = hmac.new(salt, KEY.reveal(), hashlib.sha256).digest()
    record_key = hmac.new(prk, b"tokenvault.v2 record key\x01", hashlib.sha256).digest()
    aad = "\n".join(["tokenvault.v2", TENANT, USER, CLIENT, VERSION]).encode("utf-8")
    plaintext = AESGCM(record_key).decrypt(nonce, body, aad).decode("utf-8")

    assert plaintext == TOKEN.reveal()


def test_a_version_1_blob_relabelled_as_version_2_or_back_does_not_open():
    one = _seal_v1(KEY, TOKEN, BINDING, os.urandom(12))
    two = seal(KEY, TOKEN, BINDING)
    for blob in (bytes([2]) + one[1:], bytes([1]) + two[1:]):
        with pytest.raises(CiphertextInvalid):
            unseal(KEY, blob, BINDING)


def test_every_single_bit_flip_fails():
    blob = seal(KEY, Sensitive("short-token"), BINDING)
    for index in range(len(blob)):
        for bit in range(8):
            tampered = bytearray(blob)
            tampered[index] ^= 1 << bit
            with pytest.raises(CiphertextInvalid):
                unseal(KEY, bytes(tampered), BINDING)


@pytest.mark.parametrize("length", [0, 1, 12, 13, 28, 29, 44])
def test_empty_and_truncated_blobs_fail(length):
    blob = seal(KEY, TOKEN, BINDING)[:length]
    with pytest.raises(CiphertextInvalid) as caught:
        unseal(KEY, blob, BINDING)
    assert str(caught.value) == "The stored ciphertext could not be decrypted."


def test_truncated_by_one_byte_fails():
    blob = seal(KEY, TOKEN, BINDING)
    with pytest.raises(CiphertextInvalid):
        unseal(KEY, blob[:-1], BINDING)


@pytest.mark.parametrize("moved", [
    Binding("0c1f6a5e-3e6b-4a4f-9d1d-000000000000", USER, CLIENT, VERSION),
    Binding(TENANT, "00000000-0000-0000-0000-0000000000a2", CLIENT, VERSION),
    Binding(TENANT, USER, "99999999-2222-3333-4444-555555555555", VERSION),
    Binding(TENANT, USER, CLIENT, "fedcba9876543210fedcba9876543210"),
], ids=["tenant", "user", "client", "key_version"])
def test_a_ciphertext_moved_elsewhere_does_not_decrypt(moved):
    blob = seal(KEY, TOKEN, BINDING)
    with pytest.raises(CiphertextInvalid):
        unseal(KEY, blob, moved)


def test_ids_are_bound_lower_case():
    blob = seal(KEY, TOKEN, Binding(TENANT.upper(), USER, CLIENT.upper(), VERSION.upper()))
    assert unseal(KEY, blob, BINDING) == TOKEN


def test_wrong_key_fails():
    blob = seal(KEY, TOKEN, BINDING)
    with pytest.raises(CiphertextInvalid):
        unseal(Sensitive(os.urandom(32)), blob, BINDING)


@pytest.mark.parametrize("format_byte", [0x00, 0x03, 0xFF])
def test_wrong_format_byte_fails(format_byte):
    blob = bytearray(seal(KEY, TOKEN, BINDING))
    blob[0] = format_byte
    with pytest.raises(CiphertextInvalid):
        unseal(KEY, bytes(blob), BINDING)


@pytest.mark.parametrize("size", [16, 24, 31, 33])
def test_keys_other_than_32_bytes_are_refused(size):
    with pytest.raises(TenantKeyInvalid):
        seal(Sensitive(bytes(size)), TOKEN, BINDING)


def test_failures_carry_no_crypto_detail():
    blob = bytearray(seal(KEY, TOKEN, BINDING))
    blob[-1] ^= 1
    with pytest.raises(CiphertextInvalid) as caught:
        unseal(KEY, bytes(blob), BINDING)
    assert caught.value.__cause__ is None and caught.value.__context__ is None
    assert blob.hex() not in repr(caught.value)
