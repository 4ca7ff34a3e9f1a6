"""The ``memrepl`` command: a thin layer that wires the library and formats its output.

Layout (ARCHITECTURE.md, "The layers": the CLI is the top layer and may import everything):

- :mod:`~memrepl.cli.main`: the parser, the dispatch, and the ONE place where errors become
  messages and exit codes (STYLE.md, "Errors").
- :mod:`~memrepl.cli.context`: what every command shares -- the common options (``--db``,
  ``--node-id``, ``--traceback``), finding and opening the store, parsing tiers, priorities and
  times, and the CLI's own errors.
- :mod:`~memrepl.cli.output`: tables, JSON, JSON lines and CSV on stdout (the CLI is the only
  place that prints), and the output flags every command that prints rows shares.
- ``*_cmds`` modules: one per group of subcommands -- the parser and a light ``run``; the heavy
  half of a command lives in a module of its own that ``run`` imports: :mod:`.daemon`
  (``serve``), :mod:`.syncing` and :mod:`.progress` (``sync``), :mod:`.status_report`
  (``status``), :mod:`.logs` (the daemon's logging).

**Start-up time is a rule, not a wish.** ``memrepl --help`` imports every ``*_cmds`` module to
build the parser, and every command pays for what those modules import at load time. So a
command module imports only the standard library and light memrepl modules (``cli.context``,
``cli.output``, ``protocol.enums``, ``storage.peek``) at module level; the storage layer
(SQLAlchemy), networkx, the node, the mesh and the policies are imported inside the functions
that use them. ``tests/cli/test_startup.py`` fails when ``--help`` or ``get`` load any of them;
``bench/cli_bench.py`` measures the time.

Adding a subcommand never touches the existing modules: drop a module named ``<name>_cmds.py``
into this package with a function ``add_parsers(subparsers)`` that adds its parsers (with
:func:`memrepl.cli.context.add_command`, which also gives them the common options) and sets
``run`` on each leaf parser to a function ``run(args) -> int``; an optional module constant
``ORDER`` (an int, default 100) places it in ``memrepl --help``. :mod:`~memrepl.cli.main` finds
such modules by name when it builds the parser.
"""
