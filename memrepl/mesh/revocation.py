"""The revocation list: node certificates a node no longer admits, reloaded while it runs.

The file is text, one entry per line; ``#`` starts a comment, blank lines are ignored::

    # node-c's machine was lost: none of its certificates may connect any more
    node:node-c
    # node-d's old certificate (its key leaked); node-d runs with a newly issued one
    serial:4f1c0e...

``node:ID`` revokes every certificate naming that node id; ``serial:HEX`` revokes one certificate
(its serial number in hex, as ``memrepl cert show`` prints it). The CA decides who is admitted;
this list only takes admission away, so revoking a node needs no new key or certificate anywhere
else.

The rules that keep it right:

- **A list that cannot be parsed never replaces a good one.** :meth:`RevocationWatcher.poll`
  keeps the entries it had and records the error (the node logs it and shows it in its stats):
  failing open would readmit every revoked node, failing closed would cut off every peer. A list
  that cannot be read when the node starts stops it from starting.
- **Reloading is a cheap poll**: the file's ``(mtime_ns, size, inode)`` is compared every poll,
  and the file is read only when that changed.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from memrepl.errors import RevocationListError

__all__ = ["PeerIdentity", "RevocationList", "RevocationWatcher"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PeerIdentity:
    """Who a peer proved to be: its node id and, in certificate mode, its certificate."""

    node_id: str
    #: The certificate's serial number in lower-case hex; None in shared-key mode.
    serial: str | None = None
    #: SHA-256 of the certificate (DER), lower-case hex; None in shared-key mode.
    fingerprint: str | None = None

    def describe(self) -> str:
        if self.serial is None:
            return f"{self.node_id!r} (shared key)"
        return f"{self.node_id!r} (certificate serial {self.serial})"


@dataclass(frozen=True, slots=True)
class RevocationList:
    """Revoked node ids and certificate serials (hex, lower case, no leading zeros)."""

    node_ids: frozenset[str] = frozenset()
    serials: frozenset[str] = frozenset()

    def __len__(self) -> int:
        return len(self.node_ids) + len(self.serials)

    def reason(self, identity: PeerIdentity) -> str | None:
        """Why ``identity`` is revoked, or None if it is not."""
        if identity.node_id in self.node_ids:
            return f"node {identity.node_id!r} is on the revocation list"
        if identity.serial is not None and identity.serial in self.serials:
            return (
                f"the certificate of {identity.node_id!r} (serial {identity.serial}) is on the "
                "revocation list"
            )
        return None

    @classmethod
    def parse(cls, text: str, *, source: str = "the revocation list") -> RevocationList:
        """Parse the file format of the module docstring; :class:`RevocationListError` names the
        first bad line."""
        node_ids: set[str] = set()
        serials: set[str] = set()
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            kind, sep, value = line.partition(":")
            value = value.strip()
            if sep and kind.strip() == "node" and value:
                node_ids.add(value)
                continue
            if sep and kind.strip() == "serial" and value:
                try:
                    serials.add(format(int(value.replace(":", ""), 16), "x"))
                except ValueError:
                    pass
                else:
                    continue
            raise RevocationListError(
                f"{source}, line {number}: {raw.strip()!r} is not 'node:ID' or 'serial:HEX'",
                line=number,
            )
        return cls(frozenset(node_ids), frozenset(serials))


def _signature(path: Path) -> tuple[int, int, int]:
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


@dataclass(slots=True)
class RevocationWatcher:
    """A revocation list file and the entries last loaded from it."""

    path: Path
    current: RevocationList = field(default_factory=RevocationList)
    #: ``time.time_ns()`` of the last successful load.
    loaded_at_ns: int = 0
    #: Why the last reload failed (the previous entries stay in force); None after a good one.
    last_error: str | None = None
    _seen: tuple[int, int, int] | None = None

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RevocationWatcher:
        """Read the list now. Raises :class:`RevocationListError` if it cannot be read or
        parsed."""
        watcher = cls(Path(path))
        try:
            seen = _signature(watcher.path)
            text = watcher.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise RevocationListError(
                f"cannot read the revocation list {str(watcher.path)!r}: {exc}"
            ) from exc
        watcher.current = RevocationList.parse(text, source=str(watcher.path))
        watcher._seen = seen
        watcher.loaded_at_ns = time.time_ns()
        return watcher

    def poll(self) -> bool:
        """Reload if the file changed; True if new entries are now in force.

        Never raises: a file that is gone, unreadable or malformed leaves the entries in force,
        sets :attr:`last_error` and is logged (once per distinct error).
        """
        try:
            seen = _signature(self.path)
            if seen == self._seen:
                return False
            text = self.path.read_text(encoding="utf-8")
            loaded = RevocationList.parse(text, source=str(self.path))
        except (OSError, UnicodeDecodeError, RevocationListError) as exc:
            error = f"revocation list not reloaded (the previous entries stay in force): {exc}"
            if error != self.last_error:
                log.error("%s", error)  # once per distinct error, not once per poll
            self.last_error = error
            self._seen = None  # read it again at the next poll
            return False
        self._seen = seen
        self.last_error = None
        self.loaded_at_ns = time.time_ns()
        changed = loaded != self.current
        self.current = loaded
        return changed
