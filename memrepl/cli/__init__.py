"""The ``memrepl`` command: a thin layer that wires the library and formats its output.

Layout (ARCHITECTURE.md, "The layers": the CLI is the top layer and may import everything):

- :mod:`~memrepl.cli.main`: the parser, the dispatch, and the ONE place where errors become
  messages and exit codes (STYLE.md, "Errors").
- :mod:`~memrepl.cli.context`: what every command shares -- the common options (``--db``,
  ``--node-id``, ``--traceback``), finding and opening the store, parsing tiers, priorities and
  times, and the CLI's own errors.
- :mod:`~memrepl.cli.output`: tables and JSON on stdout (the CLI is the only place that prints).
- ``*_cmds`` modules: one per group of subcommands.

Adding a subcommand never touches the existing modules: drop a module named ``<name>_cmds.py``
into this package with a function ``add_parsers(subparsers)`` that adds its parsers (with
:func:`memrepl.cli.context.add_command`, which also gives them the common options) and sets
``run`` on each leaf parser to a function ``run(args) -> int``; an optional module constant
``ORDER`` (an int, default 100) places it in ``memrepl --help``. :mod:`~memrepl.cli.main` finds
such modules by name when it builds the parser.
"""
