"""A vault composed from the in-memory fakes, with helpers to look inside it."""

from tests.fakes import FakeIdentityProvider, FakeKeys, FakeRecords, FixedClock
from tokenvault.access_cache import AccessTokenCache
from tokenvault.envelope import Binding, unseal
from tokenvault.model import Caller, CallerKind, RecordKey
from tokenvault.sensitive import Sensitive
from tokenvault.vault import Vault

CLIENT = "11111111-2222-3333-4444-555555555555"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
USER = "00000000-0000-0000-0000-0000000000a1"
KEY = RecordKey(TENANT, USER)
SCOPES = ("https://graph.microsoft.com/User.Read",)


class World:
    def __init__(self, *, cache: bool = False, rotate: bool = True) -> None:
        self.clock = FixedClock()
        self.keys = FakeKeys()
        self.records = FakeRecords()
        self.idp = FakeIdentityProvider(self.clock, rotate=rotate)
        self.cache = AccessTokenCache() if cache else None
        self.vault = Vault(client_id=CLIENT, keys=self.keys, records=self.records,
                           identity=self.idp, clock=self.clock, access_tokens=self.cache)

    def user(self, user_id: str = USER, tenant_id: str = TENANT) -> Caller:
        return Caller(CallerKind.USER, tenant_id, object_id=user_id,
                      assertion=Sensitive(f"user-token:{user_id}"))

    def stored_refresh_token(self, key: RecordKey = KEY) -> str:
        record = self.records.rows[key]
        tenant_key = self.keys.get(record.tenant_id, record.key_version)
        binding = Binding(record.tenant_id, record.user_id, record.client_id, record.key_version)
        return unseal(tenant_key.material, record.ciphertext, binding).reveal()
