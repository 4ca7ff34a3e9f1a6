"""The error tree of ``memrepl/errors.py``, kept honest.

Every exception class memrepl defines lives in ``memrepl.errors`` and in the tree its docstring
draws; every one states its own ``code``, and those codes -- what a NACK carries to other nodes
-- are pinned here, so that renaming a class (or forgetting a code on a new one) fails a test
instead of changing the wire.
"""

from __future__ import annotations

import importlib
import pkgutil
import re

import memrepl
from memrepl import errors
from memrepl.errors import FaultCode, MemreplError

#: What a NACK (or a handshake refusal) says for each error class. These strings travel between
#: nodes of different versions: change one only together with every node that reads it.
CODES: dict[str, str] = {
    "MemreplError": "memrepl",
    "ProtocolError": "malformed",
    "CompressionError": "bad-gzip",
    "FrameFaultError": "frame-fault",
    "ItemError": "item",
    "InvalidItemIdError": "invalid-item-id",
    "ItemTooLargeError": "item-too-large",
    "InvalidContentError": "invalid-content",
    "FilingOptionsError": "invalid-filing-options",
    "ItemExistsError": "item-exists",
    "ItemNotFoundError": "item-not-found",
    "CapacityExceededError": "capacity-exceeded",
    "BatchError": "batch",
    "BatchTooLargeError": "batch-too-large",
    "MisaddressedBatchError": "misaddressed-batch",
    "BadCursorError": "bad-cursor",
    "UnrequestedSnapshotError": "unrequested-snapshot",
    "ClockSkewError": "clock-skew",
    "UnknownTierError": "unknown-tier",
    "StoreError": "store",
    "NodeIdMismatchError": "node-id-mismatch",
    "SchemaTooNewError": "schema-too-new",
    "StoreInUseError": "store-in-use",
    "ClockRewindError": "clock-rewind",
    "ConfigError": "config",
    "NodeConfigError": "node-config",
    "PolicyConfigError": "policy-config",
    "NodeStateError": "node-state",
    "RoundStateError": "round-state",
    "InvalidArgumentError": "invalid-argument",
    "RecallError": "recall",
    "InvalidNamespaceError": "invalid-namespace",
    "InvalidQueryError": "invalid-query",
    "InvalidFilterError": "invalid-filter",
    "EmbedderError": "embedder",
    "CheckEndedError": "check-ended",
    "MeshError": "mesh",
    "AuthenticationError": "authentication",
    "HandshakeError": "handshake",
    "ClusterKeyError": "cluster-key",
    "CertificateError": "certificate",
    "RevocationListError": "revocation-list",
    "PeerUnavailableError": "peer-unavailable",
    "ControlError": "control",
    "CommandError": "command",
    "UsageError": "usage",
}

#: The mesh's fault codes: the code of its NACKs, DISCONNECTs and handshake refusals.
FAULT_CODES: dict[str, str] = {
    "BAD_HMAC": "bad-hmac",
    "BAD_SEQUENCE": "bad-sequence",
    "HANDSHAKE_REQUIRED": "handshake-required",
    "UNEXPECTED_HANDSHAKE": "unexpected-handshake",
    "HANDSHAKE_TIMEOUT": "handshake-timeout",
    "BAD_HANDSHAKE": "bad-handshake",
    "AUTH_FAILED": "auth-failed",
    "AUTH_MODE_MISMATCH": "auth-mode-mismatch",
    "BAD_CERTIFICATE": "bad-certificate",
    "IDENTITY_MISMATCH": "identity-mismatch",
    "REVOKED": "revoked",
    "THROTTLED": "throttled",
    "SCHEMA_MISMATCH": "schema-mismatch",
    "VERSION_MISMATCH": "version-mismatch",
    "WRONG_PEER": "wrong-peer",
    "FRAME_TOO_LARGE": "frame-too-large",
    "BAD_MAGIC": "bad-magic",
    "BAD_VERSION": "bad-version",
    "UNKNOWN_MSG_TYPE": "unknown-msg-type",
    "UNKNOWN_PRIORITY": "unknown-priority",
    "MALFORMED_HEADER": "malformed-header",
    "TOO_MANY_FAULTS": "too-many-faults",
    "IDLE_TIMEOUT": "idle-timeout",
    "DUPLICATE": "duplicate",
    "SHUTDOWN": "shutdown",
}

#: Errors that never reach a library caller: the mesh's frame refusals stay in the mesh, an
#: anti-entropy check that ends early becomes its result's error, a round's state machine fed
#: out of turn is a bug of its driver, and the command line's own errors end in its exit code.
#: Every other error is exported by memrepl.
INTERNAL = {"FrameFaultError", "CheckEndedError", "RoundStateError", "CommandError", "UsageError"}

_KEBAB = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")


def error_classes() -> dict[str, type[MemreplError]]:
    """The error classes ``memrepl.errors`` defines, by name."""
    return {
        name: value
        for name, value in vars(errors).items()
        if isinstance(value, type)
        and issubclass(value, MemreplError)
        and value.__module__ == errors.__name__
    }


def every_memrepl_module() -> list[str]:
    """Every module of the package, imported (not the migration scripts or ``__main__``)."""
    names = [
        info.name
        for info in pkgutil.walk_packages(memrepl.__path__, "memrepl.")
        if not info.name.startswith("memrepl._migrations") and info.name != "memrepl.__main__"
    ]
    for name in names:
        importlib.import_module(name)
    return names


def all_subclasses(cls: type) -> set[type]:
    found: set[type] = set()
    for sub in cls.__subclasses__():
        found |= {sub, *all_subclasses(sub)}
    return found


def drawn_tree() -> dict[str, str | None]:
    """The tree in the module docstring: each class's parent as drawn (None for the root)."""
    doc = errors.__doc__
    assert doc is not None
    lines = doc.split("The tree::\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    parents: dict[str, str | None] = {}
    path: list[str] = []
    indent = len(lines[0]) - len(lines[0].lstrip())
    for line in lines:
        match = re.search(r"[A-Za-z]", line)
        assert match is not None, line
        depth = (match.start() - indent) // 4
        name = line[match.start() :].split()[0]
        del path[depth:]
        parents[name] = path[-1] if path else None
        path.append(name)
    return parents


def test_every_error_class_states_its_own_code() -> None:
    missing = [name for name, cls in error_classes().items() if "code" not in vars(cls)]
    assert missing == [], f"give each a class attribute code = 'kebab-case': {missing}"


def test_the_codes_on_the_wire_are_pinned() -> None:
    assert {name: cls.code for name, cls in error_classes().items()} == CODES


def test_class_codes_are_distinct_and_kebab_case() -> None:
    codes = list(CODES.values())
    assert len(set(codes)) == len(codes)
    assert all(_KEBAB.fullmatch(code) for code in codes), codes


def test_the_mesh_fault_codes_are_pinned() -> None:
    assert {fault.name: fault.value for fault in FaultCode} == FAULT_CODES


def test_an_instance_carries_its_fault_code() -> None:
    assert errors.ProtocolError("x").code == "malformed"
    assert errors.ProtocolError("x", code="bad-magic").code == "bad-magic"
    fault = errors.FrameFaultError(FaultCode.BAD_HMAC, "altered", in_sync=True)
    assert (fault.code, fault.fault, fault.in_sync) == ("bad-hmac", FaultCode.BAD_HMAC, True)
    assert errors.HandshakeError("auth-failed", "no").code == "auth-failed"
    # A subclass without a code of its own would inherit its parent's: the first test forbids it.
    assert errors.ItemExistsError("x").code == "item-exists" != errors.ItemError("x").code


def test_every_exception_memrepl_defines_lives_in_errors() -> None:
    every_memrepl_module()
    elsewhere = sorted(
        f"{cls.__module__}.{cls.__qualname__}"
        for cls in all_subclasses(BaseException)
        if cls.__module__.startswith("memrepl") and cls.__module__ != errors.__name__
    )
    assert elsewhere == []


def test_the_docstring_draws_the_tree_of_the_code() -> None:
    classes = error_classes()
    drawn = drawn_tree()
    assert set(drawn) == set(classes)
    actual = {
        name: None if cls is MemreplError else cls.__bases__[0].__name__
        for name, cls in classes.items()
    }
    assert drawn == actual


def test_public_errors_are_exported_from_memrepl() -> None:
    public = sorted(set(error_classes()) - INTERNAL)
    assert [name for name in public if name not in memrepl.__all__] == []
    assert all(getattr(memrepl, name) is error_classes()[name] for name in public)
