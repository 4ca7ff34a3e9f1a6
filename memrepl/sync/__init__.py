"""memrepl's sync layer: replicating the tiers of a store with peers (ARCHITECTURE.md, layer 4).

What lives where (each module's docstring gives its rule):

- :mod:`~memrepl.sync.manager`: :class:`~memrepl.sync.manager.MemorySyncManager`, the seed's
  manager: registering tiers, answering batches with ACK or NACK, sync vectors, tombstones.
- :mod:`~memrepl.sync.rounds`: one ``sync_with_peer`` round as a state machine without I/O;
  :mod:`~memrepl.sync.push`: the batch in flight, resent when its connection is lost, and the
  push of ready-made batches; :mod:`~memrepl.sync.round_events`: their events and actions;
  :mod:`~memrepl.sync.driver`: the one async driver that runs it over a mesh and a store;
  :mod:`~memrepl.sync.awaiting`: the answers awaited from peers, and lost connections.
- :mod:`~memrepl.sync.builder`: every outgoing batch (deltas, probes, snapshots, REPLICATE
  requests, the URGENT push, repair batches).
- :mod:`~memrepl.sync.batches`: reading deltas and applying incoming batches over a Connection.
- :mod:`~memrepl.sync.wire`: an item's replicated state and its MEMSHADOW v2 form.
- :mod:`~memrepl.sync.messages`: the ACK and NACK messages; :mod:`~memrepl.sync.results`: what a
  round reports.
- :mod:`~memrepl.sync.conflicts`, :mod:`~memrepl.sync.vectors`, :mod:`~memrepl.sync.tombstones`,
  :mod:`~memrepl.sync.snapshots`: the conflict log, the durable positions, tombstone collection
  and the end of a snapshot.
- :mod:`~memrepl.sync.transport`: the ``Mesh`` interface every transport implements.

The package imports nothing itself: the mesh layer imports :mod:`~memrepl.sync.transport` alone,
without loading the manager and the storage layer with it. ``MemorySyncManager`` is exported by
``memrepl``.
"""
