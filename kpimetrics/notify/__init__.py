"""Notifications (SPEC §10): the `notify:` block of kpimetrics.yml and `kpimetrics notify`.

A row of plain stages, as the rest of kpimetrics:

    settings.py   the typed `notify:` block (channels, rules, scorecard_url), loaded with kpimetrics.yml
    check.py      its cross-object rules (KPI160-167), run by `validate`; a channel's env_var() values rendered
    notices.py    headlines -> the notices due (what `when` asks, less what kpi_notifications says was sent)
                  -> one message per recipient and channel -> sent -> logged
    messages.py   a message's text in each format (slack, teams, json, email): pure functions of the notices
    send.py       the standard library's HTTP and SMTP clients, with a timeout; failures as values

This module imports nothing: config.py imports settings.py from here.
"""
