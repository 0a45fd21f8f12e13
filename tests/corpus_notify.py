"""Hostile-input corpus: the `notify:` block of kpimetrics.yml (SPEC §10, KPI160-169; see corpus.py). FAULTS run in
test_error_catalog; ELSEWHERE: code -> where it is tested.

Each fault is the valid project's kpimetrics.yml (7 lines) with a `notify:` block from line 8 (`notify_yml`): the
channels on lines 10 and 11, the rules from line 13, scorecard_url after them.
"""
from __future__ import annotations

import textwrap

from corpus import Fault
from helpers_projects import KPIMETRICS_YML, OWNERS_YML

CONFIG = "kpimetrics.yml"
SLACK = "{name: slack, type: webhook, url: \"{{ env_var('ACME_SLACK_URL') }}\", format: slack}"
MAIL = ("{name: mail, type: email, host: smtp.acme.example, port: 587, user: kpi-bot, "
        "password: \"{{ env_var('ACME_SMTP_PASSWORD') }}\", from: kpi-bot@acme.example}")
RULE = "{when: [off_track, at_risk], to: owner, channels: [mail]}"


def notify_yml(slack: str = SLACK, mail: str = MAIL, rule: str = RULE, extra: str = "") -> dict[str, str]:
    return {CONFIG: textwrap.dedent(KPIMETRICS_YML).strip("\n") + "\n" + (
        "notify:\n"
        "  channels:\n"
        f"    - {slack}\n"
        f"    - {mail}\n"
        "  rules:\n"
        f"    - {rule}\n"
        f"{extra}")}


FAULTS = [
    Fault("KPI160", notify_yml(rule="{when: [off_track], to: owner, channels: [mial]}"), CONFIG, 13,
          "notify rule 1: unknown channel 'mial'; did you mean 'mail'?"),
    Fault("KPI161", notify_yml(rule="{when: [off_track], channels: [slack, mail]}"), CONFIG, 13,
          "notify rule 1 sends email (channel 'mail') but has no recipients"),
    Fault("KPI161", notify_yml(rule="{when: [off_track], to: [owner, finance], channels: [mail]}"), CONFIG, 13,
          "notify rule 1: `to` entry 'finance' is neither `owner` nor an email address"),
    Fault("KPI162", notify_yml(slack="{name: slack, type: webhook, url: ftp://hooks.acme.example/x, format: slack}"),
          CONFIG, 10, "notify channel 'slack': url is not an http(s) URL (its scheme is 'ftp')"),
    Fault("KPI162", notify_yml(extra="  scorecard_url: kpi.acme.example/scorecard\n"), CONFIG, 14,
          "notify.scorecard_url is not an http(s) URL"),
    Fault("KPI163", notify_yml(slack=SLACK.replace("format: slack", "format: slak")), CONFIG, 10,
          "notify channel 'slack': unknown webhook format 'slak'; did you mean 'slack'?"),
    Fault("KPI164", notify_yml(rule="{select: 'tag:bord', when: [off_track], channels: [slack]}"), CONFIG, 13,
          "notify rule 1: select 'tag:bord': selector 'tag:bord' matches no KPI or standard"),
    Fault("KPI164", notify_yml(rule="{select: '+state:modified', when: [off_track], channels: [slack]}"), CONFIG, 13,
          "notify rule 1: select '+state:modified': state: selectors compare with an earlier build, which a rule has none of"),
    Fault("KPI007", notify_yml(mail=MAIL.replace("port: 587", "port: 70000")), CONFIG, 11,
          "notify channel 'mail': port 70000 is not a port number"),
    Fault("KPI165", notify_yml(mail=SLACK), CONFIG, 11, "notify channel 'slack' is declared twice"),
    Fault("KPI166", notify_yml(mail=MAIL.replace("\"{{ env_var('ACME_SMTP_PASSWORD') }}\"", "hunter22")), CONFIG, 11,
          "notify channel 'mail': its password is written in kpimetrics.yml; it is a secret"),
    Fault("KPI166", notify_yml(slack=SLACK.replace("\"{{ env_var('ACME_SLACK_URL') }}\"",
                                                   "https://hooks.slack.com/services/T0/B0/XyZ")), CONFIG, 10,
          "notify channel 'slack': its url is written in kpimetrics.yml; it is a secret"),
    # repeat_customers' owner is vp_sales (kpis/sales.yml line 30), whose registry entry loses its email
    Fault("KPI167", {**notify_yml(), "owners.yml": textwrap.dedent(OWNERS_YML).replace(
        "{name: vp_sales, email: vp-sales@acme.example, team: sales}", "{name: vp_sales, team: sales}")},
          "kpis/sales.yml", 30, "notify rule 1 emails each KPI's owner (channel 'mail'), and kpi 'repeat_customers' has "
                                "owner 'vp_sales', which is no email address and has none under `owners:`"),
    Fault("KPI169", {}, CONFIG, 1, "kpimetrics.yml declares no `notify:` channels and rules: nothing to send",
          command="notify"),
]

ELSEWHERE = {
    "KPI168": "a channel that fails to deliver (a webhook answering 500, an SMTP server refusing): tests/test_notify.py "
              "against a local HTTP and a local SMTP server",
}
