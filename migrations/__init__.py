"""memrepl's Alembic migrations; installed as the package ``memrepl._migrations``.

``alembic upgrade head`` from the repository root runs them on a database file (see
``alembic.ini``); ``memrepl.open()`` runs them on open through
:mod:`memrepl.storage.migrate`. A new migration is added with
``alembic revision --autogenerate -m "..."`` and must become the single head.
"""
