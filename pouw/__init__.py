"""The proof-of-useful-work primitive: noisy exact matmul, transcript tickets, certificates.

Knows nothing of blocks or networks: the caller supplies a 32-byte commitment and a target.
"""

from pouw.backends import available_backends, get_backend
from pouw.certificate import MAX_CERTIFICATE_BYTES, Certificate
from pouw.errors import CertificateError, OperandError, ParamsError, PouwError
from pouw.mining import MiningResult, MiningSession, WinningTicket, mine_product, operand_roots
from pouw.params import MAX_TARGET, TILE_H, TILE_W, PouwParams, default_r, work_of_target
from pouw.verify import tile_ticket, verify_certificate

__all__ = [
    "MAX_CERTIFICATE_BYTES",
    "MAX_TARGET",
    "TILE_H",
    "TILE_W",
    "Certificate",
    "CertificateError",
    "MiningResult",
    "MiningSession",
    "OperandError",
    "ParamsError",
    "PouwError",
    "PouwParams",
    "WinningTicket",
    "available_backends",
    "default_r",
    "get_backend",
    "mine_product",
    "operand_roots",
    "tile_ticket",
    "verify_certificate",
    "work_of_target",
]
