"""Helpers that tests in several directories use, one copy each: the real server in a
subprocess and the namespaces tests keep to (:mod:`.server`), the ``eventodb`` command
(:mod:`.cli`), requests httpx will not send (:mod:`.raw_http`), free ports (:mod:`.ports`) and
the test session's Postgres (:mod:`.postgres`).

Fixtures stay in the ``conftest.py`` of the directories whose tests use them; what is here is
imported.
"""
