"""Notifications (SPEC §10), for real: a local HTTP server catches the webhooks, a local SMTP server (aiosmtpd, with
STARTTLS and a login) takes the email, and `kpimetrics notify` (and `run --notify`) runs through the CLI.

The project: a shop whose December 2025 (the latest complete month at the as-of date 2026-01-15) has
revenue 800 against 1,000 (off track: the at-risk band ends at 900) and 4 orders against 5 (at risk: the band
ends at 3.75), and 3 customers against 2 (on track). Rule 1 emails each owner an off-track or at-risk KPI; rule
2 posts off-track board KPIs to a Slack, a Teams and a JSON webhook. So a first call sends five messages:
revenue to its owner and to the three webhooks, order_count to its owner (bob, through the owners registry).

Checked: the exact message of each format and the email's subject and body, the recipients, nothing sent twice,
a failed send tried again on the next call (the webhook answers 500 once), the log rows, `--dry-run` sending
and logging nothing, a failed notice leaving the run's published tables as they are, and no secret (the webhook
urls' tokens, the SMTP password) in any output, file under target/ or table.
"""
from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import re
import shutil
import socket
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import duckdb
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from click.testing import CliRunner

from helpers_run import execute, insert_orders, query, table, write_run_project
from kpimetrics.cli import main

AS_OF = "2026-01-15"
SLACK_TOKEN, TEAMS_TOKEN, HOOK_TOKEN = "T0SLACK-b7e1c9f3a2", "teams-sig-5d8e2a9c41", "hook-key-0c3f6b81e7"
SMTP_USER, SMTP_PASSWORD = "kpi-bot", "smtp-pass-83b2e6d1f0"
SECRETS = (SLACK_TOKEN, TEAMS_TOKEN, HOOK_TOKEN, SMTP_PASSWORD)
LINK = "https://kpi.shop.example/kpi"


# --- the servers ---------------------------------------------------------------------------------

class Catcher:
    """A webhook receiver on 127.0.0.1: records each POST (path and JSON body), answers with the next of
    `answers` (200 once they run out)."""

    def __init__(self):
        self.received: list[tuple[str, dict]] = []
        self.answers: list[int] = []
        catcher = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                catcher.received.append((self.path, json.loads(body)))
                code = catcher.answers.pop(0) if catcher.answers else 200
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def by_path(self, token: str) -> list[dict]:
        return [body for path, body in self.received if token in path]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Mailbox:
    """What the SMTP server accepted: (mail_from, rcpt_tos, parsed message), and the logins it saw."""

    def __init__(self):
        self.mail: list[tuple[str, list[str], email.message.EmailMessage]] = []
        self.logins: list[tuple[bytes, bytes]] = []
        self.tls: list[bool] = []

    async def handle_DATA(self, server, session, envelope):
        self.tls.append(session.ssl is not None)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.mail.append((envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 OK"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        self.logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=(auth_data.login, auth_data.password) == (SMTP_USER.encode(), SMTP_PASSWORD.encode()))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1: the SMTP server's, and the client's trust anchor."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


@pytest.fixture
def catcher():
    c = Catcher()
    yield c
    c.close()


@pytest.fixture
def mailbox(tls_files, monkeypatch):
    """An SMTP server on 127.0.0.1 that requires STARTTLS before anything, and a login over TLS; the client
    trusts its certificate through SSL_CERT_FILE (as ssl.create_default_context reads it)."""
    cert, key = tls_files
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=_free_port(), tls_context=context, require_starttls=True,
                            authenticator=box.authenticate, auth_required=True)
    controller.start()
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    monkeypatch.setenv("KPI_TEST_SMTP_PORT", str(controller.port))
    monkeypatch.setenv("KPI_TEST_SMTP_PASSWORD", SMTP_PASSWORD)
    yield box
    controller.stop()


# --- the project ---------------------------------------------------------------------------------

KPIS = """
kpis:
  - name: revenue
    label: Net revenue
    owner: sales@shop.example
    strategy: grow_sales
    indicator: lagging
    drives: [order_count]
    unit: currency
    tags: [board]
    actions: [Call the top ten accounts, Review the discounts]
    check_ins:
      - {date: 2025-11-10, author: ana, note: Campaign starts}
      - {date: 2025-12-20, author: ana, note: Holiday dip expected}
    model: source('shop', 'orders')
    time: ordered_at
    measure: sum(amount)
    target: 1000
    tolerance: 10%
  - name: order_count
    owner: bob
    strategy: grow_sales
    indicator: leading
    actions: Follow up open carts
    model: source('shop', 'orders')
    time: ordered_at
    measure: count(order_id)
    target: 5
    tolerance: 25%
  - name: customers
    owner: bob
    strategy: grow_sales
    indicator: leading
    actions: Follow up open carts
    model: source('shop', 'orders')
    time: ordered_at
    measure: count(distinct customer_id)
    target: 2
"""
OWNERS = """
owners:
  - {name: sales, email: sales@shop.example}
  - {name: ceo, email: ceo@shop.example}
  - {name: bob, full_name: Bob Stone, email: bob@shop.example}
"""
CONFIG = """
name: shop
profile: shop
dialect: duckdb
output_schema: kpi
defaults: {grain: month, lookback: 1}
notify:
  channels:
    - {name: team-slack, type: webhook, format: slack, url: "{{ env_var('KPI_TEST_SLACK_URL') }}"}
    - {name: teams, type: webhook, format: teams, url: "{{ env_var('KPI_TEST_TEAMS_URL') }}"}
    - {name: hook, type: webhook, format: json, url: "{{ env_var('KPI_TEST_HOOK_URL') }}"}
    - name: mail
      type: email
      host: 127.0.0.1
      port: "{{ env_var('KPI_TEST_SMTP_PORT') | as_number }}"
      starttls: true
      user: kpi-bot
      password: "{{ env_var('KPI_TEST_SMTP_PASSWORD') }}"
      from: kpi-bot@shop.example
  rules:
    - {when: [off_track, at_risk], to: owner, channels: [mail]}
    - {select: "tag:board", when: [off_track], channels: [team-slack, teams, hook]}
  scorecard_url: https://kpi.shop.example/
"""
HOOK_LINE = 10  # kpimetrics.yml's line of the channel `hook`


def orders() -> list[tuple]:
    """November: 3 orders of 300 by 3 customers; December: 4 of 200 by 3 customers; January (not complete): 1."""
    rows, oid = [], 1
    for day, amount, customer in ([(dt.date(2025, 11, d), 300.0, d) for d in (3, 10, 17)]
                                  + [(dt.date(2025, 12, d), 200.0, c) for d, c in ((1, 1), (8, 2), (15, 3), (22, 3))]
                                  + [(dt.date(2026, 1, 5), 50.0, 1)]):
        rows.append((oid, customer, dt.datetime.combine(day, dt.time(12)), "north", "web", amount, 0.0, "completed", "x"))
        oid += 1
    return rows


@pytest.fixture
def shop(tmp_path, catcher, mailbox, monkeypatch) -> Path:
    monkeypatch.setenv("KPI_TEST_SLACK_URL", catcher.url(f"/services/{SLACK_TOKEN}"))
    monkeypatch.setenv("KPI_TEST_TEAMS_URL", catcher.url(f"/workflows/{TEAMS_TOKEN}"))
    monkeypatch.setenv("KPI_TEST_HOOK_URL", catcher.url(f"/hooks/{HOOK_TOKEN}"))
    root = write_run_project(tmp_path / "shop", KPIS, files={"kpimetrics.yml": CONFIG, "owners.yml": OWNERS})
    insert_orders(root, orders())
    return root


OUTPUTS: list[str] = []  # every CLI output of a test, checked for secrets


def cli(root: Path, *args: str, code: int = 0) -> str:
    out = CliRunner().invoke(main, [*args, "--project-dir", str(root)])
    OUTPUTS.append(out.output)
    assert out.exit_code == code, out.output
    assert "Traceback" not in out.output and "internal error" not in out.output, out.output
    return out.output


def run(root: Path, *extra: str, code: int = 0) -> str:
    return cli(root, "run", "--as-of", AS_OF, *extra, code=code)


def log(root: Path) -> list[tuple]:
    return query(root, "SELECT name, grain, period_start, status, channel, recipient, outcome FROM kpi.kpi_notifications "
                       "ORDER BY sent_at, channel, recipient, name")


def no_forecasts(root: Path) -> None:
    """The messages here are exact without forecasts (test_a_forecast_row_is_in_the_message has one)."""
    if query(root, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'kpi' "
                   "AND table_name = 'kpi_forecast'")[0][0]:
        execute(root, "DELETE FROM kpi.kpi_forecast")


# --- the expected messages -----------------------------------------------------------------------

REVENUE_TITLE = "[shop] Net revenue is off track (December 2025)"
REVENUE_FACTS = [
    ("Period", "December 2025"),
    ("Value", "800 against a target of 1,000"),
    ("Status", "off track"),
    ("Change", "-100 (-11.1%) on the period before"),
    ("Actions", "Call the top ten accounts; Review the discounts"),
    ("Latest check-in", "Holiday dip expected (2025-12-20, ana)"),
    ("Owner", "sales@shop.example"),
]
SLACK = {
    "text": REVENUE_TITLE,
    "blocks": [
        {"type": "header", "text": {"type": "plain_text", "text": REVENUE_TITLE}},
        {"type": "section", "text": {"type": "mrkdwn", "text": (
            f"*<{LINK}/revenue.html|Net revenue>* is ✖ off track\n"
            "*Period:* December 2025\n"
            "*Value:* 800 against a target of 1,000\n"
            "*Change:* -100 (-11.1%) on the period before\n"
            "*Actions:* Call the top ten accounts; Review the discounts\n"
            "*Latest check-in:* Holiday dip expected (2025-12-20, ana)\n"
            "*Owner:* sales@shop.example")}},
    ],
}
TEAMS = {
    "type": "message",
    "attachments": [{
        "contentType": "application/vnd.microsoft.card.adaptive",
        "contentUrl": None,
        "content": {
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "type": "AdaptiveCard",
            "version": "1.4",
            "body": [
                {"type": "TextBlock", "text": REVENUE_TITLE, "weight": "Bolder", "size": "Medium", "wrap": True},
                {"type": "TextBlock", "text": "Net revenue is off track", "weight": "Bolder", "wrap": True,
                 "separator": True},
                {"type": "FactSet", "facts": [{"title": t, "value": v} for t, v in REVENUE_FACTS]},
                {"type": "ActionSet", "actions": [{"type": "Action.OpenUrl", "title": "Open Net revenue on the scorecard",
                                                   "url": f"{LINK}/revenue.html"}]},
            ],
        },
    }],
}
JSON = {
    "project": "shop",
    "channel": "hook",
    "recipient": "",
    "title": REVENUE_TITLE,
    "notices": [{
        "name": "revenue", "label": "Net revenue", "grain": "month", "period_start": "2025-12-01",
        "period_end": "2026-01-01", "status": "off_track", "value": 800.0, "target": 1000.0, "change": -100.0,
        "change_pct": -100.0 / 900.0, "unit": "currency", "currency": None, "owner": "sales@shop.example", "forecasts": [],
        "actions": "Call the top ten accounts\nReview the discounts",
        "check_in": {"date": "2025-12-20", "author": "ana", "note": "Holiday dip expected"},
        "url": f"{LINK}/revenue.html",
    }],
}
REVENUE_MAIL = f"""\
Net revenue is off track
  Period: December 2025
  Value: 800 against a target of 1,000
  Status: off track
  Change: -100 (-11.1%) on the period before
  Actions: Call the top ten accounts; Review the discounts
  Latest check-in: Holiday dip expected (2025-12-20, ana)
  Owner: sales@shop.example
  {LINK}/revenue.html

-- 
Sent by kpimetrics notify for shop (channel mail).
"""
ORDERS_MAIL = f"""\
order_count is at risk
  Period: December 2025
  Value: 4 against a target of 5
  Status: at risk
  Change: +1 (+33.3%) on the period before
  Actions: Follow up open carts
  Owner: bob
  {LINK}/order_count.html

-- 
Sent by kpimetrics notify for shop (channel mail).
"""
FIRST_LOG = sorted([
    ("revenue", "month", dt.date(2025, 12, 1), "off_track", "mail", "sales@shop.example", "sent"),
    ("order_count", "month", dt.date(2025, 12, 1), "at_risk", "mail", "bob@shop.example", "sent"),
    ("revenue", "month", dt.date(2025, 12, 1), "off_track", "team-slack", "", "sent"),
    ("revenue", "month", dt.date(2025, 12, 1), "off_track", "teams", "", "sent"),
    ("revenue", "month", dt.date(2025, 12, 1), "off_track", "hook", "", "sent"),
])


def mails(box: Mailbox) -> dict[str, tuple[str, str, str, str]]:
    """Each email by its one recipient: (envelope sender, From, Subject, body)."""
    out = {}
    for sender, rcpts, message in box.mail:
        assert len(rcpts) == 1 and message["To"] == rcpts[0]
        out[rcpts[0]] = (sender, message["From"], message["Subject"], message.get_content().replace("\r\n", "\n"))
    return out


# --- the tests -------------------------------------------------------------------------------------

def test_each_format_exactly_one_message_per_recipient_and_channel_then_nothing_twice(shop, catcher, mailbox):
    run(shop)
    no_forecasts(shop)
    out = cli(shop, "notify")
    assert "notify: sent 5 notice(s) in 5 message(s); 0 message(s) failed; 0 notice(s) sent before" in out

    assert catcher.by_path(SLACK_TOKEN) == [SLACK]
    assert catcher.by_path(TEAMS_TOKEN) == [TEAMS]
    assert catcher.by_path(HOOK_TOKEN) == [JSON]
    assert len(catcher.received) == 3
    assert mails(mailbox) == {
        "sales@shop.example": ("kpi-bot@shop.example", "kpi-bot@shop.example", REVENUE_TITLE, REVENUE_MAIL),
        "bob@shop.example": ("kpi-bot@shop.example", "kpi-bot@shop.example", "[shop] order_count is at risk (December 2025)",
                             ORDERS_MAIL),
    }
    assert mailbox.tls == [True, True]  # STARTTLS before the login and the message (the server requires it)
    assert set(mailbox.logins) == {(SMTP_USER.encode(), SMTP_PASSWORD.encode())}
    assert sorted(log(shop)) == FIRST_LOG

    # a second call, and a run with --notify: the same KPIs, periods and statuses are not sent again
    out = cli(shop, "notify")
    assert "notify: sent 0 notice(s) in 0 message(s); 0 message(s) failed; 5 notice(s) sent before" in out
    run(shop, "--notify")
    assert len(catcher.received) == 3 and len(mailbox.mail) == 2
    assert sorted(log(shop)) == FIRST_LOG


def test_a_changed_status_is_a_new_notice_and_a_status_seen_before_is_not(shop, catcher, mailbox):
    run(shop, "--notify")
    assert len(catcher.received) == 3 and len(mailbox.mail) == 2
    kpis = shop / "kpis" / "kpis.yml"
    # a wider band: December's 800 is at risk now (>= 750): rule 1 emails the owner again, rule 2 (off track) is silent
    kpis.write_text(KPIS.replace("tolerance: 10%", "tolerance: 25%"))
    run(shop, "--notify")
    assert len(catcher.received) == 3
    assert [(r, m["Subject"]) for _, r, m in mailbox.mail[2:]] == [
        (["sales@shop.example"], "[shop] Net revenue is at risk (December 2025)")]
    assert [r for r in log(shop) if r not in FIRST_LOG] == [
        ("revenue", "month", dt.date(2025, 12, 1), "at_risk", "mail", "sales@shop.example", "sent")]
    # back to off track: notified for this period and status already, on every channel
    kpis.write_text(KPIS)
    run(shop, "--notify")
    assert len(catcher.received) == 3 and len(mailbox.mail) == 3 and len(log(shop)) == 6


def test_a_failed_send_names_the_channel_is_logged_and_is_sent_on_the_next_call(shop, catcher, mailbox):
    run(shop)
    no_forecasts(shop)
    catcher.answers = [500]  # the first webhook call fails: team-slack is first, by the rule's channel order
    out = cli(shop, "notify", code=1)
    assert re.search(rf"kpimetrics.yml:8:\d+: error\[KPI168\]: notify channel 'team-slack': the message about revenue "
                     r"was not sent: the webhook answered HTTP 500 Internal Server Error", out), out
    assert "hint: it is logged as failed in kpi_notifications and sent again by the next `kpimetrics notify`" in out
    assert len(catcher.received) == 3 and len(mailbox.mail) == 2  # the others went
    failed = ("revenue", "month", dt.date(2025, 12, 1), "off_track", "team-slack", "",
              "failed: the webhook answered HTTP 500 Internal Server Error")
    assert sorted(log(shop)) == sorted([failed] + [r for r in FIRST_LOG if r[4] != "team-slack"])

    out = cli(shop, "notify")
    assert "notify: sent 1 notice(s) in 1 message(s); 0 message(s) failed; 4 notice(s) sent before" in out
    assert catcher.by_path(SLACK_TOKEN) == [SLACK, SLACK]  # tried, then sent
    assert sorted(r for r in log(shop) if r[4] == "team-slack") == sorted([failed, failed[:-1] + ("sent",)])
    cli(shop, "notify")
    assert len(catcher.received) == 4 and len(mailbox.mail) == 2


def test_a_failed_notice_leaves_what_the_run_published(shop, catcher, mailbox, tmp_path):
    twin = shutil.copytree(shop, tmp_path / "twin")
    catcher.answers = [500, 500, 500]
    out = run(shop, "--notify", code=1)
    assert "error[KPI168]" in out and "run 1: success" in out
    run(twin)
    for name in ("kpi_values", "kpi_status", "kpi_targets", "kpi_catalog", "kpi_check_ins", "kpi_strategy"):
        assert table(shop, name) == table(twin, name), name
    assert query(shop, "SELECT run_id, status FROM kpi.kpi_runs") == [(1, "success")]
    assert sorted(r[4] for r in log(shop) if r[6] != "sent") == ["hook", "team-slack", "teams"]


def test_an_unreachable_smtp_server_and_an_unset_secret_name_the_channel(shop, catcher, mailbox, monkeypatch):
    run(shop)
    monkeypatch.setenv("KPI_TEST_SMTP_PORT", str(_free_port()))  # nothing listens there
    monkeypatch.delenv("KPI_TEST_HOOK_URL")
    out = cli(shop, "notify", code=1)
    assert re.search(r"kpimetrics.yml:11:\d+: error\[KPI168\]: notify channel 'mail': the message to sales@shop.example "
                     r"about revenue was not sent: cannot reach the SMTP server: Connection refused", out), out
    assert "error[KPI168]: notify channel 'mail': the message to bob@shop.example about order_count was not sent" in out
    assert re.search(r"kpimetrics.yml:10:\d+: error\[KPI061\]: environment variable 'KPI_TEST_HOOK_URL' is not set", out), out
    assert out.count("error[KPI061]") == 1
    assert "error[KPI168]: notify channel 'hook': the message about revenue was not sent: its settings could not be " \
           "rendered" in out
    assert sorted(r[4] for r in log(shop) if r[6] == "sent") == ["team-slack", "teams"]
    assert {r[6] for r in log(shop) if r[4] == "hook"} == {"failed: environment variable 'KPI_TEST_HOOK_URL' is not set"}


def test_a_rendered_url_that_is_not_http_is_refused_without_quoting_it(shop, catcher, mailbox, monkeypatch):
    run(shop)
    monkeypatch.setenv("KPI_TEST_TEAMS_URL", f"ftp://127.0.0.1/{TEAMS_TOKEN}")
    out = cli(shop, "notify", code=1)
    assert re.search(r"kpimetrics.yml:9:\d+: error\[KPI162\]: notify channel 'teams': url is not an http\(s\) URL "
                     r"\(its scheme is 'ftp'\)", out), out
    assert "error[KPI168]: notify channel 'teams': the message about revenue was not sent" in out
    assert TEAMS_TOKEN not in out and "****" not in out  # never quoted, so nothing to mask
    assert catcher.by_path(TEAMS_TOKEN) == [] and len(catcher.received) == 2 and len(mailbox.mail) == 2


def test_a_scorecard_url_that_cannot_be_rendered_drops_the_links_not_the_notices(shop, catcher, mailbox):
    config = shop / "kpimetrics.yml"
    config.write_text(config.read_text().replace("https://kpi.shop.example/", "\"{{ env_var('KPI_TEST_NO_SUCH') }}\""))
    run(shop)
    out = cli(shop, "notify")
    assert re.search(r"kpimetrics.yml:22:\d+: warning\[KPI061\]: environment variable 'KPI_TEST_NO_SUCH' is not set", out), out
    assert "error[" not in out
    (body,) = catcher.by_path(HOOK_TOKEN)
    assert body["notices"][0]["url"] is None and len(mailbox.mail) == 2
    assert "https://" not in mails(mailbox)["sales@shop.example"][3]


def test_dry_run_prints_what_would_be_sent_and_sends_and_logs_nothing(shop, catcher, mailbox):
    run(shop)
    no_forecasts(shop)
    out = cli(shop, "notify", "--dry-run")
    assert "--- would send on mail (email) to sales@shop.example: 1 notice(s)\n" \
           f"Subject: {REVENUE_TITLE}\n\n{REVENUE_MAIL}" in out
    assert "--- would send on team-slack (slack): 1 notice(s)\n" + json.dumps(SLACK, indent=2, ensure_ascii=False) in out
    assert "--- would send on hook (json): 1 notice(s)\n" + json.dumps(JSON, indent=2, ensure_ascii=False) in out
    assert "notify: would send 5 notice(s) in 5 message(s)" in out
    assert catcher.received == [] and mailbox.mail == [] and mailbox.logins == []
    assert log(shop) == []


def test_a_forecast_row_is_in_the_message(shop, catcher, mailbox):
    run(shop)
    columns = query(shop, "SELECT column_name FROM information_schema.columns WHERE table_schema = 'kpi' "
                          "AND table_name = 'kpi_forecast'")
    if not columns:  # before kpi_forecast: as the spec names its columns
        execute(shop, "CREATE TABLE kpi.kpi_forecast (name VARCHAR, grain VARCHAR, as_of DATE, horizon_end DATE, "
                      "forecast DOUBLE, target_at_horizon DOUBLE, forecast_status VARCHAR, method VARCHAR)")
    execute(shop, "DELETE FROM kpi.kpi_forecast",
            "INSERT INTO kpi.kpi_forecast (name, grain, as_of, horizon_end, forecast, target_at_horizon, forecast_status) "
            "VALUES ('revenue', 'month', DATE '2026-01-14', DATE '2026-02-01', 990, 1000, 'on_track'), "
            "('revenue', 'month', DATE '2026-01-15', DATE '2026-02-01', 850, 1000, 'off_track'), "
            "('revenue', 'month', DATE '2026-01-15', DATE '2026-06-30', 1200, 1000, 'on_track')")
    cli(shop, "notify", "-s", "revenue")
    body = mails(mailbox)["sales@shop.example"][3]
    assert ("  Change: -100 (-11.1%) on the period before\n"
            "  Forecast: 850 by 2026-02-01 against a target of 1,000: off course\n"
            "  Forecast: 1,200 by 2026-06-30 against a target of 1,000: on course\n"
            "  Actions: ") in body
    assert catcher.by_path(HOOK_TOKEN)[0]["notices"][0]["forecasts"] == [
        {"horizon_end": "2026-02-01", "forecast": 850.0, "target": 1000.0, "status": "off_track"},
        {"horizon_end": "2026-06-30", "forecast": 1200.0, "target": 1000.0, "status": "on_track"}]
    assert set(mails(mailbox)) == {"sales@shop.example"}  # -s revenue: order_count's notice waits


def test_no_secret_in_any_output_file_or_table(shop, catcher, mailbox):
    OUTPUTS.clear()
    catcher.answers = [500]
    run(shop, "--notify", code=1)
    cli(shop, "notify", "--dry-run")
    cli(shop, "notify", "--log-format", "json")
    cli(shop, "compile")
    assert len(catcher.received) == 4 and len(mailbox.mail) == 2
    texts = list(OUTPUTS)
    texts += [p.read_text(errors="replace") for p in (shop / "target").rglob("*") if p.is_file()]
    con = duckdb.connect(str(shop / "wh.duckdb"), read_only=True)
    try:
        for schema, name in con.execute("SELECT table_schema, table_name FROM information_schema.tables").fetchall():
            texts.append(repr(con.execute(f'SELECT * FROM "{schema}"."{name}"').fetchall()))
    finally:
        con.close()
    leaks = [(secret, text[:200]) for text in texts for secret in SECRETS if secret in text]
    assert leaks == []
    assert len(log(shop)) == 6  # the log (a failed notice among them) was there to look in


def test_notify_without_a_notify_block_and_before_any_run(shop, tmp_path):
    out = cli(shop, "notify", code=1)
    assert "no output tables in schema 'kpi' yet: run `kpimetrics run` first" in out
    config = shop / "kpimetrics.yml"
    config.write_text(config.read_text().split("notify:")[0])
    out = cli(shop, "notify", code=1)
    assert "kpimetrics.yml:1:1: error[KPI169]: kpimetrics.yml declares no `notify:` channels and rules" in out
    out = run(shop, "--notify", code=1)  # refused before the run: nothing computed, nothing published
    assert "error[KPI169]" in out and not (shop / "target" / "run_results.json").exists()
    assert query(shop, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'kpi'") == [(0,)]


@pytest.mark.usefixtures("pg_server")
def test_the_log_on_postgresql(tmp_path, catcher, monkeypatch, request):
    import engines

    engine = engines.postgres_engine(request.getfixturevalue("pg_server"))
    monkeypatch.setenv("KPI_TEST_HOOK_URL", catcher.url(f"/hooks/{HOOK_TOKEN}"))
    config = CONFIG.split("  channels:")[0] + (
        "  channels:\n"
        "    - {name: hook, type: webhook, format: json, url: \"{{ env_var('KPI_TEST_HOOK_URL') }}\"}\n"
        "  rules:\n"
        "    - {when: [off_track, at_risk], channels: [hook]}\n")
    root = write_run_project(tmp_path / "pg", KPIS, files={"kpimetrics.yml": config, "owners.yml": OWNERS})
    insert_orders(root, orders())
    (root / "profiles.yml").write_text(engine.profiles_yml(root, "shop"))
    adapter = __import__("kpimetrics").Project.load(root).connect()
    try:
        engines.copy_sources(root / "wh.duckdb", adapter, "main", ("orders",))
    finally:
        adapter.close()
    catcher.answers = [503]
    run(root, "--notify", code=1)
    cli(root, "notify")
    cli(root, "notify")
    # one message to the webhook's audience carries both notices: it failed, then went, then nothing was due
    assert [[n["name"] for n in b["notices"]] for b in catcher.by_path(HOOK_TOKEN)] == [["revenue", "order_count"]] * 2
    adapter = __import__("kpimetrics").Project.load(root).connect()
    try:
        rows = adapter.fetchall("SELECT name, period_start, status, channel, recipient, outcome FROM kpi.kpi_notifications "
                                "ORDER BY sent_at, outcome, name")
    finally:
        adapter.close()
    december = dt.date(2025, 12, 1)
    assert sorted(rows, key=lambda r: (r[5] != "failed: the webhook answered HTTP 503 Service Unavailable", r[0])) == [
        ("order_count", december, "at_risk", "hook", "", "failed: the webhook answered HTTP 503 Service Unavailable"),
        ("revenue", december, "off_track", "hook", "", "failed: the webhook answered HTTP 503 Service Unavailable"),
        ("order_count", december, "at_risk", "hook", "", "sent"),
        ("revenue", december, "off_track", "hook", "", "sent"),
    ]
