"""The web console in a real browser against the real server, on SQLite and Postgres.

Each test works in namespaces of its own; what the page shows is checked against what the API
answers for the same question.
"""

from __future__ import annotations

import json
import random
import re
import time
from pathlib import Path

from playwright.sync_api import Browser

from eventodb.core.hashing import group_member
from tests.console.conftest import (
    PHONE,
    TOKEN_PATTERN,
    Namespace,
    Tab,
    browsing,
    make_namespace,
)
from tests.support.server import ADMIN_TOKEN, Server


def test_admin_creates_a_namespace_and_browses_it_down_to_a_message(
    tab: Tab, server: Server
) -> None:
    tab.open()
    assert tab.page.inner_text("h1") == "Log in"
    tab.shot("login")
    tab.login(ADMIN_TOKEN)
    page = tab.page
    assert page.inner_text("h1") == "Namespaces"
    name = f"shop_{random.randrange(10**9)}"
    page.fill("#new-namespace", name)
    page.fill("#new-description", "web shop")
    page.click("#create-namespace")
    token = page.input_value("#created-token", timeout=5_000)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.click(".created button:text-is('Copy')")
    page.wait_for_selector(".created button:text-is('Copied')")
    assert page.evaluate("navigator.clipboard.readText()") == token
    assert server.ok(token, "ns.info", name)["description"] == "web shop"
    shop = Namespace(server, name, token)
    for i in range(3):
        shop.write(
            f"order-{i}",
            "Placed",
            {"customer": "Ada Lovelace", "total": i * 10, "items": [{"sku": "a", "n": i}]},
        )
    shop.write("order-1", "<img src=x onerror=alert(1)>", {"note": "markup stays text"})
    shop.write("order-1", "Paid", {"amount": 10}, metadata={"correlationStreamName": "pay-9"})

    tab.go("#/namespaces")
    row = page.locator(f"tr[data-namespace='{name}']")
    assert row.locator("td[data-label=Messages]").inner_text() == "5"
    assert row.locator("td[data-label=Streams]").inner_text() == "3"
    tab.shot("namespaces")

    with tab.rendering():
        row.locator("a", has_text=name).click()
    expected = [s["stream"] for s in shop.ok("ns.streams")]
    assert (
        tab.cells("tr[data-stream]", "data-stream") == expected == ["order-0", "order-1", "order-2"]
    )
    tab.shot("streams")

    with tab.rendering():
        page.click("tr[data-stream='order-1'] a >> text=order-1")
    assert page.inner_text("#stream-version") == f"version {shop.ok('stream.version', 'order-1')}"
    messages = shop.ok("stream.get", "order-1")
    rows = page.locator("tr[data-position]")
    assert rows.count() == len(messages) == 3
    for i, message in enumerate(messages):
        cells = rows.nth(i)
        assert cells.get_attribute("data-position") == str(message[2])
        assert cells.get_attribute("data-global") == str(message[3])
        assert cells.locator("td[data-label=Type]").inner_text() == message[1]
    # A type full of markup is shown as text, not run.
    assert page.locator("td[data-label=Type] img").count() == 0
    # Long data is collapsed; opening it shows the pretty-printed JSON.
    details = rows.nth(0).locator("details.json")
    details.locator("summary").click()
    assert json.loads(details.locator("pre").inner_text()) == messages[0][4]
    assert '\n  "items": [' in details.locator("pre").inner_text()
    tab.shot("stream")

    page.set_viewport_size(PHONE)
    tab.shot("stream-phone")


def test_stream_pages_both_ways_with_the_keyboard_and_jumps_to_a_position(
    tab: Tab, namespace: Namespace
) -> None:
    for i in range(7):
        namespace.write("log-1", "Line", {"n": i})
    tab.login(namespace.token)
    tab.go(f"#/ns/{namespace.id}/stream/log-1?limit=3")
    assert tab.cells("tr[data-position]", "data-position") == ["0", "1", "2"]
    page = tab.page
    route = page.evaluate("location.hash")
    page.focus("text=Skip to content")
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "view"
    assert page.evaluate("location.hash") == route
    for key, expected in [("]", ["3", "4", "5"]), ("]", ["6"]), ("[", ["3", "4", "5"])]:
        with tab.rendering():
            page.keyboard.press(key)
        assert tab.cells("tr[data-position]", "data-position") == expected
    page.fill("#jump", "1")
    with tab.rendering():
        page.press("#jump", "Enter")
    assert tab.cells("tr[data-position]", "data-position") == ["1", "2", "3"]
    with tab.rendering():
        page.click("#page-last")
    assert tab.cells("tr[data-position]", "data-position") == ["4", "5", "6"]


def test_streams_and_categories_search_by_prefix_and_page(tab: Tab, namespace: Namespace) -> None:
    for name in ["cart-1", "cart-2", "cart-3", "user-1", "user-2"]:
        namespace.write(name, "Made", {})
    tab.login(namespace.token)
    page = tab.page
    tab.go(f"#/ns/{namespace.id}?limit=2")
    assert tab.cells("tr[data-stream]", "data-stream") == ["cart-1", "cart-2"]
    with tab.rendering():
        page.click("#page-next")
    assert tab.cells("tr[data-stream]", "data-stream") == ["cart-3", "user-1"]
    page.keyboard.press("/")
    page.keyboard.type("user")
    with tab.rendering():
        page.keyboard.press("Enter")
    assert tab.cells("tr[data-stream]", "data-stream") == ["user-1", "user-2"]

    tab.go(f"#/ns/{namespace.id}/categories")
    categories = namespace.ok("ns.categories")
    assert tab.cells("tr[data-category]", "data-category") == [c["category"] for c in categories]
    assert page.inner_text("tr[data-category=cart] td[data-label=Streams]") == "3"
    tab.shot("categories")


def test_category_filtered_by_consumer_group_shows_what_category_get_returns(
    tab: Tab, namespace: Namespace
) -> None:
    for i in range(12):
        metadata = {"correlationStreamName": f"order-{i}"} if i % 3 == 0 else None
        namespace.write(f"account-{i}", "Opened", {"i": i}, metadata=metadata)
        namespace.write(f"account-{i}+retry", "Retried", {"i": i})
    tab.login(namespace.token)
    page = tab.page
    tab.go(f"#/ns/{namespace.id}/category/account")
    page.fill("#member", "1")
    page.fill("#group-size", "3")
    with tab.rendering():
        page.click("#apply-filters")
    expected = namespace.ok("category.get", "account", {"consumerGroup": {"member": 1, "size": 3}})
    assert expected, "the seed should give member 1 of 3 some streams"
    assert tab.cells("tr[data-global]", "data-global") == [str(m[4]) for m in expected]
    assert tab.cells("tr[data-global]", "data-stream") == [m[1] for m in expected]
    assert set(tab.cells("tr[data-global]", "data-member")) == {"1"}
    tab.shot("category")

    # A group size alone labels every row with the member that owns its stream.
    tab.go(f"#/ns/{namespace.id}/category/account?groupSize=4")
    streams = tab.cells("tr[data-global]", "data-stream")
    assert len(streams) == 24
    members = tab.cells("tr[data-global]", "data-member")
    assert members == [str(group_member(s, 4)) for s in streams]

    page.fill("#correlation", "order")
    page.fill("#group-size", "")
    with tab.rendering():
        page.click("#apply-filters")
    correlated = namespace.ok("category.get", "account", {"correlation": "order"})
    assert tab.cells("tr[data-global]", "data-global") == [str(m[4]) for m in correlated]
    assert len(correlated) == 4


def test_console_computes_consumer_group_members_like_the_server(tab: Tab) -> None:
    """The console's MD5-based hash_64 agrees with the server's on awkward names."""
    rng = random.Random(7)
    alphabet = "abcXYZ019-+_ éü漢字😀"
    names = [f"cat-{''.join(rng.choices(alphabet, k=rng.randrange(0, 80)))}" for _ in range(300)]
    names += ["cat-" + "x" * n for n in (55, 56, 57, 63, 64, 65, 119, 120)]  # MD5 block edges
    names += ["nodash", "cat-", "cat-1+a+b", "cat-+x"]
    tab.open("#/login")
    members = tab.page.evaluate(
        """async names => {
            const groups = await import('./groups.js');
            return names.map(n => [groups.memberOf(n, 7), groups.memberOf(n, 1000003)]);
        }""",
        names,
    )
    assert members == [[group_member(n, 7), group_member(n, 1000003)] for n in names]


def test_live_tail_shows_a_message_written_by_another_client_within_a_second(
    tab: Tab, namespace: Namespace
) -> None:
    namespace.write("sensor-1", "Reading", {"v": 0})
    tab.login(namespace.token)
    page = tab.page
    tab.go(f"#/ns/{namespace.id}/tail?category=sensor")
    page.click("#tail-start")
    page.wait_for_selector("#tail-status:text-is('live')")
    assert page.locator("#tail-rows tr").count() == 0  # starts at "now": history is not replayed

    started = time.monotonic()
    written = namespace.write("sensor-2", "Reading", {"v": 42})
    page.wait_for_selector(
        f"#tail-rows tr[data-global='{written['globalPosition']}']", timeout=1_000
    )
    assert time.monotonic() - started < 1.0
    row = page.locator("#tail-rows tr").first
    assert row.locator("td[data-label=Stream]").inner_text() == "sensor-2"
    assert row.locator("td[data-label=Data]").inner_text() == '{"v":42}'

    # Paused: pokes are counted and queued, not shown; resuming catches up, newest on top.
    page.click("#tail-pause")
    queued = [namespace.write("sensor-3", "Reading", {"v": v}) for v in (1, 2)]
    namespace.write("other-1", "Noise", {})  # another category: never shown
    page.wait_for_selector("#tail-counts:has-text('2 waiting')")
    assert page.locator("#tail-rows tr").count() == 1
    page.wait_for_function("parseFloat(document.querySelector('#tail-rate').textContent) > 0")
    page.click("#tail-pause")
    page.wait_for_selector(f"#tail-rows tr[data-global='{queued[1]['globalPosition']}']")
    assert tab.cells("#tail-rows tr", "data-global") == [
        str(queued[1]["globalPosition"]),
        str(queued[0]["globalPosition"]),
        str(written["globalPosition"]),
    ]
    tab.shot("tail")
    page.click("#tail-start")  # stop
    page.wait_for_selector("#tail-status:text-is('stopped')")


def _tail(tab: Tab, namespace: Namespace, query: str, start_from: str = "") -> None:
    """Open the live tail of ``query`` (route parameters), start it and wait until it is live."""
    tab.login(namespace.token)
    tab.go(f"#/ns/{namespace.id}/tail{query}")
    tab.page.fill("#tail-from", start_from)
    tab.page.click("#tail-start")
    tab.page.wait_for_selector("#tail-status:text-is('live')")


def _tail_rows_through(tab: Tab, last: dict[str, int]) -> list[str]:
    """The global positions the tail shows, top down, once ``last`` has arrived; stops it."""
    tab.page.wait_for_selector(f"#tail-rows tr[data-global='{last['globalPosition']}']")
    rows = tab.cells("#tail-rows tr", "data-global")
    tab.page.click("#tail-start")  # stop
    tab.page.wait_for_selector("#tail-status:text-is('stopped')")
    return rows


def test_live_tail_of_a_stream_shows_its_messages_only(tab: Tab, namespace: Namespace) -> None:
    namespace.write("acct-1", "Opened", {"n": 0})
    _tail(tab, namespace, "?stream=acct-1")
    namespace.write("acct-2", "Noise", {})
    last = namespace.write("acct-1", "Deposited", {"n": 1})
    new = namespace.ok("stream.get", "acct-1", {"position": 1})
    assert _tail_rows_through(tab, last) == [str(m[3]) for m in reversed(new)]
    assert tab.page.locator("#tail-rows td[data-label=Position]").all_inner_texts() == ["1"]

    # From position 0: the stream's history first, then what arrives.
    _tail(tab, namespace, "?stream=acct-1", start_from="0")
    newest = namespace.write("acct-1", "Withdrawn", {"n": 2})
    history = namespace.ok("stream.get", "acct-1")
    assert len(history) == 3
    assert _tail_rows_through(tab, newest) == [str(m[3]) for m in reversed(history)]


def test_live_tail_of_everything_shows_every_category(tab: Tab, namespace: Namespace) -> None:
    first = namespace.write("acct-1", "T", {})
    _tail(tab, namespace, "")
    arrived = [namespace.write(s, "T", {}) for s in ("acct-3", "other-1", "acct-3")]
    new = namespace.ok("category.get", "", {"position": first["globalPosition"] + 1})
    assert _tail_rows_through(tab, arrived[-1]) == [str(m[4]) for m in reversed(new)]

    # From a global position: what was there first, then what arrives.
    _tail(tab, namespace, "", start_from=str(first["globalPosition"]))
    newest = namespace.write("other-2", "T", {})
    history = namespace.ok("category.get", "")
    assert len(history) == 5
    assert _tail_rows_through(tab, newest) == [str(m[4]) for m in reversed(history)]


def test_live_tail_of_a_group_member_shows_the_servers_share(
    tab: Tab, namespace: Namespace
) -> None:
    streams = [f"grp-{i}" for i in range(12)]
    mine = [s for s in streams if group_member(s, 2) == 0]
    assert mine, "the names should give member 0 of 2 some streams"
    assert len(mine) < len(streams), "and member 1 some others"
    _tail(tab, namespace, "?category=grp&member=0&groupSize=2")
    for s in streams:
        namespace.write(s, "T", {})
    last = namespace.write(mine[0], "T", {"last": True})
    share = namespace.ok("category.get", "grp", {"consumerGroup": {"member": 0, "size": 2}})
    assert _tail_rows_through(tab, last) == [str(m[4]) for m in reversed(share)]

    # From position 1 (replayed), then one more write of each member.
    _tail(tab, namespace, "?category=grp&member=0&groupSize=2", start_from="1")
    other = next(s for s in streams if s not in mine)
    namespace.write(other, "T", {})
    newest = namespace.write(mine[-1], "T", {})
    share = namespace.ok("category.get", "grp", {"consumerGroup": {"member": 0, "size": 2}})
    assert _tail_rows_through(tab, newest) == [str(m[4]) for m in reversed(share)]


def test_live_tail_reconnects_after_a_server_restart_and_misses_nothing(
    browser: Browser, tmp_path: Path
) -> None:
    args = [f"--token={ADMIN_TOKEN}", f"--data-dir={tmp_path / 'data'}"]
    first = Server(args, workdir=tmp_path)
    second = None
    try:
        jobs = make_namespace(first)
        with browsing(browser, first) as tab:
            tab.login(jobs.token)
            tab.go(f"#/ns/{jobs.id}/tail?category=job")
            page = tab.page
            page.click("#tail-start")
            page.wait_for_selector("#tail-status:text-is('live')")
            before = jobs.write("job-1", "Queued", {})
            page.wait_for_selector(f"#tail-rows tr[data-global='{before['globalPosition']}']")
            assert first.stop() == 0, first.output()  # ends every subscription
            page.wait_for_selector("#tail-status:has-text('reconnecting')")
            second = Server(args, workdir=tmp_path, port=first.port)
            jobs.server = second
            after = [jobs.write("job-2", "Queued", {"n": n}) for n in range(2)]
            page.wait_for_selector("#tail-status:text-is('live')", timeout=15_000)
            page.wait_for_selector(f"#tail-rows tr[data-global='{after[1]['globalPosition']}']")
            assert tab.cells("#tail-rows tr", "data-global") == [
                str(w["globalPosition"]) for w in (after[1], after[0], before)
            ]
    finally:
        first.stop()
        if second is not None:
            assert second.stop() == 0, second.output()


def test_writing_with_a_wrong_expected_version_shows_the_servers_error(
    tab: Tab, namespace: Namespace
) -> None:
    namespace.write("account-7", "Opened", {})
    namespace.write("account-7", "Deposited", {"amount": 5})
    tab.login(namespace.token)
    page = tab.page
    tab.go(f"#/ns/{namespace.id}/write?stream=account-7")
    page.fill("#write-type", "Withdrawn")
    page.fill("#write-data", '{"amount": ')
    assert page.is_disabled("#write-submit")
    assert "data" in page.inner_text("#write-data-error")
    page.fill("#write-data", "[1, 2]")
    assert page.inner_text("#write-data-error") == "data must be a JSON object"
    page.fill("#write-data", '{"amount": 3}')
    assert page.is_enabled("#write-submit")
    page.fill("#write-expected", "5")
    page.click("#write-submit")
    error = page.locator("#write-result .error")
    assert error.locator(".code").inner_text() == "STREAM_VERSION_CONFLICT"
    assert error.locator(".message").inner_text() == "Expected version 5, stream is at version 1"
    assert namespace.ok("stream.version", "account-7") == 1
    tab.shot("write")

    page.fill("#write-expected", "1")
    page.fill("#write-metadata", '{"by": "console"}')
    page.click("#write-submit")
    assert page.inner_text("#write-result .ok").startswith("Written at position 2")
    last = namespace.ok("stream.last", "account-7")
    assert (last[1], last[4], last[5]) == ("Withdrawn", {"amount": 3}, {"by": "console"})


def test_a_tenant_token_sees_only_its_own_namespace(tab: Tab, server: Server) -> None:
    mine = make_namespace(server, "mine")
    theirs = make_namespace(server, "theirs")
    try:
        mine.write("visible-1", "Made", {})
        theirs.write("secret-1", "Made", {})
        server.ok(ADMIN_TOKEN, "stream.write", "adminsecret-1", {"type": "Made", "data": {}})
        tab.login(mine.token)
        page = tab.page
        assert tab.cells("tr[data-stream]", "data-stream") == ["visible-1"]
        tab.go("#/namespaces")
        assert tab.cells("tr[data-namespace]", "data-namespace") == [mine.id]
        assert page.locator("#new-namespace").count() == 0  # no administration
        assert page.locator("text=Delete…").count() == 0
        tab.go(f"#/ns/{theirs.id}")
        assert page.inner_text("h1") == f"Token for namespace {theirs.id}"
        page.fill("#token", mine.token)
        page.click("button[type=submit]")
        assert "belongs to namespace" in page.inner_text(".error")
        tab.go(f"#/ns/{mine.id}/category/")  # everything this token can read
        assert set(tab.cells("tr[data-global]", "data-stream")) == {"visible-1"}
        html = page.content()
        assert "secret-1" not in html
        assert theirs.id not in page.inner_text("#view")
    finally:
        for made in (mine, theirs):
            server.rpc(ADMIN_TOKEN, "ns.delete", made.id)


def test_deleting_a_namespace_needs_its_name_typed(tab: Tab, server: Server) -> None:
    doomed = make_namespace(server, "doomed")
    doomed.write("x-1", "Made", {})
    tab.login(ADMIN_TOKEN)
    page = tab.page
    page.click(f"tr[data-namespace='{doomed.id}'] >> text=Delete…")
    dialog = page.locator("dialog[open]")
    confirm = dialog.locator("text=Delete for good")
    dialog.locator("#confirm-namespace").fill(doomed.id[:-1])
    assert confirm.is_disabled()
    dialog.locator("#confirm-namespace").fill(doomed.id)
    with tab.rendering():
        confirm.click()
    assert page.locator("dialog").count() == 0
    assert doomed.id not in tab.cells("tr[data-namespace]", "data-namespace")
    assert server.rpc(ADMIN_TOKEN, "ns.info", doomed.id).status_code == 404


def test_tokens_stay_in_session_storage_and_out_of_urls_and_the_server_log(
    tab: Tab, server: Server, namespace: Namespace
) -> None:
    namespace.write("audit-1", "Made", {})
    tab.login(namespace.token)
    page = tab.page
    tab.go(f"#/ns/{namespace.id}/tail?stream=audit-1")
    page.click("#tail-start")
    page.wait_for_selector("#tail-status:text-is('live')")
    namespace.write("audit-1", "Made", {})
    page.wait_for_selector("#tail-rows tr")
    assert page.evaluate("localStorage.length") == 0
    stored = page.evaluate("JSON.parse(sessionStorage.getItem('eventodb.console.tokens'))")
    assert stored == {namespace.id: namespace.token}
    subscriptions = [r for r in tab.requests if "/subscribe?" in r.url]
    assert subscriptions, "the tail subscribes"
    assert all(r.headers["authorization"] == f"Bearer {namespace.token}" for r in subscriptions)
    assert "token=" not in " ".join(r.url for r in tab.requests)
    page.click("text=Log out")
    page.wait_for_selector("#token")
    assert page.evaluate("sessionStorage.length") == 0

    time.sleep(0.2)  # request lines are flushed every 50 ms
    log = server.output()
    assert re.search(r"GET /subscribe 200", log) or "/subscribe" in log
    found = TOKEN_PATTERN.findall(log)
    # The banner prints the admin token given with --token, once; nothing else may appear.
    assert found == [ADMIN_TOKEN], found
