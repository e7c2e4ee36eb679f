"""Many redeems at once, with the sweep running through them, against every real part: 50
concurrent redeems for one user and 200 spread over 20 users, while an in-process sweep
rewraps every record under a newly rotated key and refreshes every record (all are due).

Each redeem asks for scopes of its own, so none is answered from the in-memory access-token
cache or shares another's identity-provider call: every one refreshes at the fake and writes
its rotated refresh token back, racing the others and the sweep for the same rows.

What must hold afterwards: every answer was 200; every record decrypts, is on the new key
version and holds a refresh token the fake still accepts; and every write to a row was
conditional on the ETag it read, no ETag was written from twice, and each row's successful
writes form one unbroken chain of ETags (Azurite enforces If-Match; the hook on the storage
clients sees every request and response, so a blind or forked write would show).
"""

from __future__ import annotations

import json
import threading
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import unquote

from tests.integration.test_sweep_e2e import rows, seed, stored_tokens
from tests.support.stack_fixtures import new_id
from tokenvault.adapters.memory_queue import MemoryQueue
from tokenvault.cli.sweep import run_in_process
from tokenvault.maintenance import Outcome
from tokenvault.model import RecordKey
from tokenvault.sweep import Planner, Worker

USERS = 20
ONE_USER_REDEEMS = 50
SPREAD_REDEEMS = 200


#: What each user stored; every redeem asks for a different subset of it.
GRANTED = [f"https://graph.microsoft.com/Scope{n}.Read" for n in range(20)]


def subset(index: int) -> list[str]:
    """The ``index``-th non-empty subset of GRANTED: distinct for every index below 2**20 - 1."""
    return [scope for bit, scope in enumerate(GRANTED) if (index + 1) >> bit & 1]


class Writes:
    """A response hook on the storage clients: every row write (PUT, the conditional replace)
    with the ETag it was conditional on, its status, and the ETag it produced."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.puts: list[tuple[str, str | None, int, str | None]] = []

    def __call__(self, pipeline_response) -> None:
        request, response = pipeline_response.http_request, pipeline_response.http_response
        if request.method != "PUT" or "(PartitionKey=" not in request.url:
            return
        row = unquote(request.url.split("(", 1)[1].split(")", 1)[0])
        with self._lock:
            self.puts.append((row, request.headers.get("If-Match"), response.status_code,
                              response.headers.get("ETag")))

    def succeeded(self) -> dict[str, list[tuple[str | None, str | None]]]:
        rows: dict[str, list[tuple[str | None, str | None]]] = defaultdict(list)
        for row, if_match, status, etag in self.puts:
            if 200 <= status < 300:
                rows[row].append((if_match, etag))
        return rows


def test_redeems_and_a_sweep_racing_for_the_same_rows_lose_nothing(stack, recompose):  # noqa: F811
    writes = Writes()
    app = recompose(storage_options={"raw_response_hook": writes})
    tenant = stack.onboard()
    users = [new_id() for _ in range(USERS)]
    for user in users:
        assert stack.store(tenant, user, scopes=GRANTED).status_code == 201
    etags_before = {user: stack.records.get(RecordKey(tenant, user)).etag for user in users}
    tokens = {user: stack.user_token(tenant, user) for user in users}
    # The sweep has everything to do: a newer key to rewrap under, and every record is due.
    new_version = stack.admin.rotate(tenant).version
    stack.expire_key_cache()
    stack.clock.advance(days=8)
    writes.puts.clear()
    refreshes = stack.entra.counts["refresh"]

    calls = [users[0]] * ONE_USER_REDEEMS + [users[i % USERS] for i in range(SPREAD_REDEEMS)]
    answers: list[int] = []
    lock = threading.Lock()

    def redeem(index: int, user: str) -> None:
        # A subset of the grant of its own: no access-token cache hit, no shared flight, a
        # write each.
        response = stack.call("redeem_token", token=tokens[user],
                              body={"scopes": subset(index)})
        with lock:
            answers.append(response.status_code)

    swept: dict = {}

    def sweep() -> None:
        queue = MemoryQueue()
        after = stack.settings.refresh_after
        planner = Planner(records=app.records, keys=app.keys, queue=queue, clock=stack.clock,
                          refresh_after=after)
        worker = Worker(vault=app.vault, queue=queue, clock=stack.clock, refresh_after=after)
        swept["plan"], swept["outcomes"] = run_in_process(planner, worker, queue)
        with lock:
            swept["answered_meanwhile"] = len(answers)

    sweeper = threading.Thread(target=sweep)
    sweeper.start()
    with ThreadPoolExecutor(max_workers=32) as pool:
        for future in [pool.submit(redeem, i, user) for i, user in enumerate(calls)]:
            future.result()
    sweeper.join()

    outcomes: Counter = swept["outcomes"]
    succeeded = writes.succeeded()
    conflicts = sum(1 for _, _, status, _ in writes.puts if status == 412)
    print(f"{len(calls)} redeems and a sweep of {USERS} records: "
          f"{stack.entra.counts['refresh'] - refreshes} refreshes at the IdP, "
          f"{sum(map(len, succeeded.values()))} writes, {conflicts} lost to a newer ETag (412); "
          f"sweep {dict((o.value, n) for o, n in outcomes.items())}, "
          f"{swept['answered_meanwhile']} redeems answered when it finished")

    assert Counter(answers) == Counter({200: len(calls)})
    # The plan takes what still needs work when it looks; the worker decides again per record.
    assert swept["plan"].scanned == USERS and outcomes[Outcome.FAILED] == 0
    assert sum(outcomes.values()) == swept["plan"].planned
    for user in users:
        record = stack.records.get(RecordKey(tenant, user))
        assert record.key_version == new_version
        assert stack.entra.refresh_token_valid(stack.stored_refresh_token(tenant, user))
        # Every write of the row was conditional, from a distinct ETag, in one chain.
        row = f"PartitionKey='{tenant}',RowKey='{user}'"
        chain = dict(succeeded[row])
        assert None not in chain and "*" not in chain, "a write was not conditional"
        assert len(chain) == len(succeeded[row]), "two writes succeeded from one ETag"
        etag, length = etags_before[user], 0
        while etag in chain:
            etag, length = chain[etag], length + 1
        assert length == len(chain) and etag == record.etag, "the row's writes forked"
    assert len(succeeded[f"PartitionKey='{tenant}',RowKey='{users[0]}'"]) > 1


def test_concurrent_stores_of_one_user_leave_the_record_of_one_that_succeeded(stack):
    """Sign-ins of one user racing each other: each store writes its own grant (create, or
    replace on conflict, at most three times). A store that keeps losing answers 503 with a
    Retry-After rather than claim its scopes were kept; the record left is a winner's, live."""
    tenant, user = stack.onboard(), new_id()
    token = stack.user_token(tenant, user)

    def store(index: int):
        scopes = [f"api://store-{index}/.default"]
        return scopes, stack.call("store_token", token=token, body={"scopes": scopes})

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(store, range(8)))

    won = [scopes for scopes, response in results if response.status_code == 201]
    lost = [response for _, response in results if response.status_code != 201]
    print(f"8 concurrent stores of one user: {len(won)} stored, {len(lost)} asked to retry")
    assert won
    for response in lost:
        assert (response.status_code, json.loads(response.get_body())["code"]) == \
            (503, "upstream_unavailable") and int(response.headers["Retry-After"]) >= 1
    assert list(stack.records.get(RecordKey(tenant, user)).scopes) in won
    assert stack.entra.refresh_token_valid(stack.stored_refresh_token(tenant, user))


def test_a_sweep_refreshing_eight_at_a_time_writes_each_row_once_from_each_etag(stack, recompose):  # noqa: F811
    """The sweep's own concurrency, with redeems racing it: one batch of 60 due records worked
    eight at a time (TOKENVAULT_SWEEP_CONCURRENCY) and 40 records that only need a rewrap
    (one transaction), while 60 redeems hit the same rows."""
    writes = Writes()
    app = recompose(storage_options={"raw_response_hook": writes})
    tenant = stack.onboard()
    due = seed(stack, tenant, 100, due=60, scopes=GRANTED)
    new_version = stack.admin.rotate(tenant).version
    stack.expire_key_cache()
    stack.entra.latency = 0.05  # refreshes overlap, as over a real network
    etags_before = {u: r.etag for u, r in rows(stack, tenant).items()}
    redeemed = due.users[::3][:20]
    tokens = {user: stack.user_token(tenant, user) for user in redeemed}
    writes.puts.clear()
    answers: list[int] = []

    def redeem(index: int, user: str) -> None:
        # A subset of the grant of its own: no cached access token, no shared flight.
        response = stack.call("redeem_token", token=tokens[user], body={"scopes": subset(index)})
        answers.append(response.status_code)

    queue = MemoryQueue()
    after = stack.settings.refresh_after
    planner = Planner(records=app.records, keys=app.keys, queue=queue, clock=stack.clock,
                      refresh_after=after)
    worker = Worker(vault=app.vault, queue=queue, clock=stack.clock, refresh_after=after,
                    concurrency=stack.settings.sweep_concurrency)
    with ThreadPoolExecutor(max_workers=8) as pool:
        racing = [pool.submit(redeem, i, redeemed[i % len(redeemed)]) for i in range(60)]
        plan, outcomes = run_in_process(planner, worker, queue)
        for future in racing:
            future.result()

    assert Counter(answers) == Counter({200: 60})
    assert plan.planned == 100 and plan.batches == 1 and outcomes[Outcome.FAILED] == 0
    assert outcomes[Outcome.REWRAPPED] == 40 and sum(outcomes.values()) == 100
    # Refreshes overlapped at the identity provider (the sweep's eight and the redeems), at
    # most the sweep's concurrency plus the redeeming threads at once.
    assert 1 < stack.entra.most_in_flight[tenant] <= stack.settings.sweep_concurrency + 8
    succeeded = writes.succeeded()
    stored = rows(stack, tenant)
    for user in due.users:
        assert stored[user].key_version == new_version
        row = f"PartitionKey='{tenant}',RowKey='{user}'"
        chain = dict(succeeded[row])
        assert None not in chain and "*" not in chain, "a write was not conditional"
        assert len(chain) == len(succeeded[row]), "two writes succeeded from one ETag"
        if user in due.due:  # refreshed: every write of the row is a PUT seen here
            etag = etags_before[user]
            while etag in chain:
                etag = chain[etag]
            assert etag == stored[user].etag and len(chain) >= 1, "the row's writes forked"
    assert all(stack.entra.refresh_token_valid(t) for t in stored_tokens(stack, tenant).values())
