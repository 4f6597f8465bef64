"""Matmul job contract: request (escrow), receipt (release to the assignee), cancel (refund)."""

from __future__ import annotations

import pytest

from consensus.genesis import DEV_BALANCE
from consensus.validation import disconnect_block
from contracts import PAYLOAD_CLASSES, JobCancel, JobReceipt, JobRequest
from contracts.jobs import (
    JOB_MIN_CHUNKS,
    MAX_JOB_TIMEOUT,
    STATUS_CANCELLED,
    STATUS_DONE,
    STATUS_PENDING,
    KTooLargeError,
    job_id_of,
    job_record,
    padded_shape,
)
from core.errors import TransactionError
from pouw import PouwParams
from pouw.noise import denoise_limbs
from pouw.params import K_MAX, MAX_CHUNKS, R_MIN
from tests.framework.chain import Chain, addr, apply, balance, make_block, tx

CLIENT = 1
WORKER = 2
OTHER = 3
ROOT_A = bytes([1]) * 32
ROOT_B = bytes([2]) * 32
SALT = bytes([7]) * 32
RESULT = bytes([9]) * 32
ESCROW = 5_000
FEE = 10


def request(**overrides: object) -> JobRequest:
    fields: dict[str, object] = dict(assignee=addr(WORKER), root_a=ROOT_A, root_b=ROOT_B, m=10,
                                     k=20, n=30, escrow=ESCROW, timeout=5, salt=SALT)
    fields.update(overrides)
    return JobRequest(**fields)  # type: ignore[arg-type]


def job_id(requester: int = CLIENT, **overrides: object) -> bytes:
    p = request(**overrides)
    return job_id_of(requester=addr(requester), root_a=p.root_a, root_b=p.root_b, m=p.m, k=p.k,
                     n=p.n, salt=p.salt)


def test_kinds_are_registered() -> None:
    assert PAYLOAD_CLASSES[5] is JobRequest
    assert PAYLOAD_CLASSES[6] is JobReceipt
    assert PAYLOAD_CLASSES[7] is JobCancel


def test_request_locks_escrow(chain: Chain) -> None:
    apply(chain.state, tx(CLIENT, 0, request(), fee=FEE), height=3)
    assert balance(chain.state, CLIENT) == DEV_BALANCE - FEE - ESCROW
    record = job_record(chain.state, job_id())
    assert record is not None
    assert record.status == STATUS_PENDING
    assert (record.requester, record.assignee) == (addr(CLIENT), addr(WORKER))
    assert (record.escrow, record.created_height, record.expiry_height) == (ESCROW, 3, 8)


def test_receipt_releases_escrow_to_assignee(chain: Chain) -> None:
    apply(chain.state, tx(CLIENT, 0, request()))
    apply(chain.state, tx(WORKER, 0, JobReceipt(job_id=job_id(), result_hash=RESULT), fee=FEE),
          height=2)
    assert balance(chain.state, WORKER) == DEV_BALANCE - FEE + ESCROW
    record = job_record(chain.state, job_id())
    assert record is not None
    assert (record.status, record.worker, record.result_hash, record.closed_height) == (
        STATUS_DONE, addr(WORKER), RESULT, 2)


def test_receipt_at_expiry_height_is_accepted(chain: Chain) -> None:
    apply(chain.state, tx(CLIENT, 0, request(timeout=5)), height=1)
    apply(chain.state, tx(WORKER, 0, JobReceipt(job_id=job_id(), result_hash=RESULT)), height=6)
    record = job_record(chain.state, job_id())
    assert record is not None and record.status == STATUS_DONE


@pytest.mark.parametrize(("payload", "rule"), [
    (request(escrow=0), "job.zero_escrow"),
    (request(m=0), "job.shape"),
    (request(k=K_MAX + 1), "job.k_too_large"),
    (request(n=65537), "job.shape"),
    (request(timeout=0), "job.timeout"),
    (request(timeout=MAX_JOB_TIMEOUT + 1), "job.timeout"),
    (request(escrow=DEV_BALANCE), "job.insufficient_balance"),  # the fee is paid first
])
def test_bad_requests(chain: Chain, payload: JobRequest, rule: str) -> None:
    root = chain.state.root()
    with pytest.raises(TransactionError) as err:
        apply(chain.state, tx(CLIENT, 0, payload, fee=FEE))
    assert err.value.rule == rule
    assert chain.state.root() == root  # a failed transaction leaves no trace


def test_duplicate_request_is_rejected(chain: Chain) -> None:
    apply(chain.state, tx(CLIENT, 0, request()))
    with pytest.raises(TransactionError) as err:
        apply(chain.state, tx(CLIENT, 1, request()))
    assert err.value.rule == "job.exists"
    # another salt is another job
    apply(chain.state, tx(CLIENT, 1, request(salt=bytes(32))))
    assert job_record(chain.state, job_id(salt=bytes(32))) is not None


def test_receipt_for_unknown_job(chain: Chain) -> None:
    with pytest.raises(TransactionError) as err:
        apply(chain.state, tx(WORKER, 0, JobReceipt(job_id=job_id(), result_hash=RESULT)))
    assert err.value.rule == "job.unknown"


def test_receipt_from_wrong_sender(chain: Chain) -> None:
    apply(chain.state, tx(CLIENT, 0, request()))
    for index in (OTHER, CLIENT):
        with pytest.raises(TransactionError) as err:
            apply(chain.state, tx(index, 0 if index == OTHER else 1,
                                  JobReceipt(job_id=job_id(), result_hash=RESULT)))
        assert err.value.rule == "job.wrong_sender"


def test_double_receipt(chain: Chain) -> None:
    apply(chain.state, tx(CLIENT, 0, request()))
    apply(chain.state, tx(WORKER, 0, JobReceipt(job_id=job_id(), result_hash=RESULT)))
    with pytest.raises(TransactionError) as err:
        apply(chain.state, tx(WORKER, 1, JobReceipt(job_id=job_id(), result_hash=RESULT)))
    assert err.value.rule == "job.not_pending"
    assert balance(chain.state, WORKER) == DEV_BALANCE - 10 + ESCROW  # paid once


def test_receipt_after_expiry(chain: Chain) -> None:
    apply(chain.state, tx(CLIENT, 0, request(timeout=5)), height=1)
    with pytest.raises(TransactionError) as err:
        apply(chain.state, tx(WORKER, 0, JobReceipt(job_id=job_id(), result_hash=RESULT)),
              height=7)
    assert err.value.rule == "job.expired"


def test_cancel_refunds_after_expiry(chain: Chain) -> None:
    apply(chain.state, tx(CLIENT, 0, request(timeout=5), fee=FEE), height=1)
    for sender, nonce, height, rule in ((CLIENT, 1, 6, "job.not_expired"),
                                        (OTHER, 0, 7, "job.not_requester")):
        with pytest.raises(TransactionError) as err:
            apply(chain.state, tx(sender, nonce, JobCancel(job_id=job_id()), fee=FEE),
                  height=height)
        assert err.value.rule == rule
    apply(chain.state, tx(CLIENT, 1, JobCancel(job_id=job_id()), fee=FEE), height=7)
    assert balance(chain.state, CLIENT) == DEV_BALANCE - 2 * FEE
    record = job_record(chain.state, job_id())
    assert record is not None and record.status == STATUS_CANCELLED
    # a cancelled job takes no receipt and no second cancel
    with pytest.raises(TransactionError) as err:
        apply(chain.state, tx(WORKER, 0, JobReceipt(job_id=job_id(), result_hash=RESULT)),
              height=7)
    assert err.value.rule == "job.not_pending"
    with pytest.raises(TransactionError) as err:
        apply(chain.state, tx(CLIENT, 2, JobCancel(job_id=job_id())), height=8)
    assert err.value.rule == "job.not_pending"


def test_cancel_unknown_job(chain: Chain) -> None:
    with pytest.raises(TransactionError) as err:
        apply(chain.state, tx(CLIENT, 0, JobCancel(job_id=job_id())))
    assert err.value.rule == "job.unknown"


def test_request_and_receipt_in_blocks(chain: Chain) -> None:
    """Through full block validation: the state root covers the job record."""
    chain.connect(make_block(chain, [tx(CLIENT, 0, request())]))
    chain.connect(make_block(chain, [tx(WORKER, 0, JobReceipt(job_id=job_id(),
                                                                result_hash=RESULT))]))
    record = job_record(chain.state, job_id())
    assert record is not None and record.status == STATUS_DONE
    assert record.closed_height == 2


def test_job_id_binds_every_field() -> None:
    base = job_id()
    assert job_id(requester=OTHER) != base
    for field, value in (("root_a", ROOT_B), ("root_b", ROOT_A), ("m", 11), ("k", 21),
                         ("n", 31), ("salt", bytes(32))):
        assert job_id(**{field: value}) != base, field
    # escrow, timeout and assignee are terms of the request, not the job's identity
    assert job_id(escrow=1, timeout=9) == base


@pytest.mark.parametrize(("shape", "padded"), [
    ((1, 1, 1), (8, 16, 4, 16)),
    ((10, 100, 30), (16, 112, 32, 16)),
    ((64, 256, 64), (64, 256, 64, 16)),
    ((8, 1024, 4), (8, 1024, 4, 16)),
    ((8, 2048, 4), (8, 2048, 4, 32)),
    ((8, 4096, 4), (8, 4096, 4, 64)),
    ((9, 4000, 5), (16, 4000, 8, 32)),
    ((65536, K_MAX, 65536), (65536, K_MAX, 65536, 64)),
])
def test_padded_shape(shape: tuple[int, int, int], padded: tuple[int, int, int, int]) -> None:

    assert padded_shape(*shape) == padded
    PouwParams(m=padded[0], k=padded[1], n=padded[2], r=padded[3]).validate()


@pytest.mark.parametrize("k", [1, 15, 16, 17, 255, 1023, 1024, 1025, 2047, 3000, 4000, K_MAX])
def test_a_job_is_mined_in_64_to_128_chunks_where_r_allows(k: int) -> None:
    """At least JOB_MIN_CHUNKS chunks once k allows r >= 16, so the denoising margin
    2·L·r/k is at most 9.4 % (below k = 1024, r is pouw's smallest, 16), never more than
    pouw's MAX_CHUNKS, and the padding stays under r."""
    _, kp, _, r = padded_shape(8, k, 4)
    chunks = kp // r
    assert kp % r == 0 and 0 <= kp - k < max(r, 16) and chunks <= MAX_CHUNKS
    if k >= JOB_MIN_CHUNKS * R_MIN:
        assert chunks >= JOB_MIN_CHUNKS
        assert 2 * denoise_limbs(kp, r) * r / kp <= 0.094
    else:
        assert r == R_MIN


@pytest.mark.parametrize("shape", [(0, 1, 1), (1, 0, 1), (1, 1, 0), (65537, 1, 1),
                                   (1, K_MAX + 1, 1)])
def test_padded_shape_rejects(shape: tuple[int, int, int]) -> None:
    with pytest.raises(ValueError):
        padded_shape(*shape)


def test_k_past_k_max_is_refused_with_the_split_rule() -> None:
    """k = K_MAX pads to itself; one more is its own refusal, naming how to split."""
    assert padded_shape(8, K_MAX, 4)[1] == K_MAX
    with pytest.raises(KTooLargeError, match="split the product along k"):
        padded_shape(8, K_MAX + 1, 4)


def test_disconnecting_blocks_restores_the_job_and_escrow(chain: Chain) -> None:
    """Reorgs: undo data covers job records like every other state key."""

    root0 = chain.state.root()
    undo1 = chain.connect(make_block(chain, [tx(CLIENT, 0, request())]))
    root1 = chain.state.root()
    undo2 = chain.connect(make_block(chain, [tx(WORKER, 0, JobReceipt(job_id=job_id(),
                                                                       result_hash=RESULT))]))
    disconnect_block(chain.state, undo2)
    assert chain.state.root() == root1
    record = job_record(chain.state, job_id())
    assert record is not None and record.status == STATUS_PENDING
    disconnect_block(chain.state, undo1)
    assert chain.state.root() == root0
    assert job_record(chain.state, job_id()) is None
    assert balance(chain.state, CLIENT) == DEV_BALANCE
