"""The envelope format of docs/design.md, held to the letter."""

import base64
import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tokenvault.envelope import Binding, _seal_with_nonce, seal, unseal
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


def test_layout_is_format_byte_nonce_ciphertext_tag():
    blob = seal(KEY, TOKEN, BINDING)
    assert blob[0] == 0x01
    assert len(blob) == 1 + 12 + len(TOKEN.reveal().encode("utf-8")) + 16


def test_nonce_is_random():
    assert seal(KEY, TOKEN, BINDING)[1:13] != seal(KEY, TOKEN, BINDING)[1:13]


# A known-answer vector, computed once with the cryptography package's AESGCM alone (not with
# seal) from docs/design.md's layout, and written out so no change to the envelope code can move it:
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


def test_the_binding_is_the_documented_associated_data():
    assert KAT_BINDING.associated_data() == KAT_AAD


def test_seal_with_a_fixed_nonce_gives_the_known_answer():
    assert _seal_with_nonce(Sensitive(KAT_KEY), Sensitive(KAT_TOKEN), KAT_BINDING, KAT_NONCE) == KAT_BLOB


def test_unseal_opens_the_known_answer():
    assert unseal(Sensitive(KAT_KEY), KAT_BLOB, KAT_BINDING).reveal() == KAT_TOKEN


def test_seal_takes_no_nonce():
    with pytest.raises(TypeError):
        seal(KEY, TOKEN, BINDING, bytes(12))
    with pytest.raises(TypeError):
        seal(KEY, TOKEN, BINDING, _nonce=bytes(12))


@pytest.mark.parametrize("size", [0, 8, 11, 13, 16])
def test_a_nonce_of_another_size_is_refused(size):
    with pytest.raises(ValueError, match="12 bytes"):
        _seal_with_nonce(KEY, TOKEN, BINDING, bytes(size))


def test_an_independent_implementation_decrypts_a_stored_blob():
    """The format is a contract: a few lines built from docs/design.md alone must open it."""
    blob = seal(KEY, TOKEN, BINDING)
    stored = base64.b64encode(blob).decode()  # as it might be exported from the table

    raw = base64.b64decode(stored)
    assert raw[0] == 1
    aad = "\n".join(["tokenvault.v1", TENANT, USER, CLIENT, VERSION]).encode("utf-8")
    plaintext = AESGCM(KEY.reveal()).decrypt(raw[1:13], raw[13:], aad).decode("utf-8")

    assert plaintext == TOKEN.reveal()


def test_every_single_bit_flip_fails():
    blob = seal(KEY, Sensitive("short-token"), BINDING)
    for index in range(len(blob)):
        for bit in range(8):
            tampered = bytearray(blob)
            tampered[index] ^= 1 << bit
            with pytest.raises(CiphertextInvalid):
                unseal(KEY, bytes(tampered), BINDING)


@pytest.mark.parametrize("length", [0, 1, 12, 13, 28])
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


@pytest.mark.parametrize("format_byte", [0x00, 0x02, 0xFF])
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
