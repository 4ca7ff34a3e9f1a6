"""Adapters that let other agent frameworks keep their memory in memrepl.

Each adapter lives in its own subpackage, installed with an extra of its own
(``pip install 'memrepl[langgraph]'``), and is a translation: it maps the framework's calls onto
memrepl's public store API and never re-implements storage, search or merge rules. Importing
this package imports no framework.
"""
