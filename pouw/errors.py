"""Errors raised by the PoUW primitive; each says which rule failed."""


class PouwError(ValueError):
    """Base class: bad parameters, operands or proofs."""


class ParamsError(PouwError):
    """Job parameters outside the documented bounds."""


class OperandError(PouwError):
    """An operand has the wrong shape, dtype or a value outside [-64, 63]."""


class CertificateError(PouwError):
    """A certificate is malformed, non-canonical, or does not verify."""
