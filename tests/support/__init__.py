"""Helpers that tests in several directories use, one copy each: the real server in a
subprocess and the namespaces tests keep to (:mod:`.server`), the ``eventodb`` command
(:mod:`.cli`), requests httpx will not send (:mod:`.raw_http`), subscriptions read byte for
byte (:mod:`.sseclient`), free ports (:mod:`.ports`), the files of ``tests/fixtures``
(:mod:`.fixture_files`) and the test session's Postgres (:mod:`.postgres`).

Pytest finds fixtures only in ``conftest.py`` files and test modules, so the few defined here
(the Postgres ones) are imported where they are used: ``tests/conftest.py`` for the whole suite,
the test module itself for ``pg_cluster``.
"""
