"""The Prometheus view of a running daemon: what ``GET /metrics`` answers.

The counters and the pass histogram are kept by :class:`~.telemetry.Telemetry` as
things happen; the gauges are read at each scrape from a :class:`~.status.Snapshot`
(the state store's few rows per rule, not its records of shipped files), so they cost
nothing between scrapes. The text comes from prometheus-client.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Iterator

from apscheduler.triggers.cron import CronTrigger
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from . import __version__
from .manifest import Manifest, Rule, UploadRule
from .manifest._model import DEFAULT_SUBSCRIBE_EVERY
from .status import ERROR, IDLE, RETRYING, WORKING, Snapshot
from .telemetry import Telemetry

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
_STATES = (IDLE, WORKING, RETRYING, ERROR)

Look = Callable[[], tuple[Manifest, Snapshot]]


class Metrics:
    """The registry of ``telemetry`` with the scrape-time gauges added.

    :param look: the current manifest and a fresh snapshot of the daemon.
    """

    def __init__(self, telemetry: Telemetry, look: Look) -> None:
        self._registry = telemetry.registry
        self._registry.register(_Gauges(look))

    def render(self) -> bytes:
        return generate_latest(self._registry)


class _Gauges(Collector):
    def __init__(self, look: Look) -> None:
        self._look = look

    def collect(self) -> Iterator[Metric]:
        manifest, snap = self._look()
        rule = ["rule"]
        pending = GaugeMetricFamily(
            "cat2sync_pending_files", "Files waiting to be shipped.", labels=rule
        )
        oldest = GaugeMetricFamily(
            "cat2sync_oldest_pending_age_seconds",
            "How long the oldest waiting file has waited (0 when none waits).",
            labels=rule,
        )
        in_flight = GaugeMetricFamily(
            "cat2sync_in_flight_files", "Files being sent right now.", labels=rule
        )
        last_pass = GaugeMetricFamily(
            "cat2sync_last_pass_timestamp_seconds",
            "When the rule's last full pass ended (0: never).",
            labels=rule,
        )
        last_success = GaugeMetricFamily(
            "cat2sync_last_success_timestamp_seconds",
            "When the rule's last full pass without error ended (0: never).",
            labels=rule,
        )
        interval = GaugeMetricFamily(
            "cat2sync_rule_interval_seconds",
            "How often the rule makes a full pass (rescan, every, or the cron's gap).",
            labels=rule,
        )
        state = GaugeMetricFamily(
            "cat2sync_rule_state",
            "1 for the rule's current state: idle, working, waiting for retry, error.",
            labels=["rule", "state"],
        )
        rules = {r.name: r for r in manifest.rules()}
        for report in snap.rules:
            name = [report.name]
            oldest_since = report.oldest_pending
            pending.add_metric(name, len(report.status.pending))
            oldest.add_metric(name, 0.0 if oldest_since is None else snap.taken - oldest_since)
            in_flight.add_metric(name, len(snap.in_flight.get(report.name, [])))
            last_pass.add_metric(name, report.status.last_finished or 0.0)
            last_success.add_metric(name, report.status.last_success or 0.0)
            interval.add_metric(name, _interval(manifest, rules[report.name]))
            for value in _STATES:
                state.add_metric([report.name, value], float(snap.states[report.name] == value))
        up = GaugeMetricFamily(
            "cat2sync_server_up",
            "1 if the server answered the daemon's last request (or idle probe), else 0.",
            labels=["server"],
        )
        for server, seen in sorted(snap.servers.items()):
            up.add_metric([server], float(seen.up))
        build = GaugeMetricFamily(
            "cat2sync_build_info", "The running cat2sync's version.", labels=["version"]
        )
        build.add_metric([__version__], 1.0)
        yield from (pending, oldest, in_flight, last_pass, last_success, interval, state, up, build)


def _interval(manifest: Manifest, rule: Rule) -> float:
    if isinstance(rule, UploadRule):
        return manifest.daemon.rescan
    if rule.cron:
        return _cron_gap(rule.cron)
    return rule.every or DEFAULT_SUBSCRIBE_EVERY


@functools.cache
def _cron_gap(crontab: str) -> float:
    """Seconds between the next two firings of ``crontab``."""
    trigger = CronTrigger.from_crontab(crontab)
    now = dt.datetime.now(trigger.timezone)
    first = trigger.get_next_fire_time(None, now)
    second = trigger.get_next_fire_time(first, first + dt.timedelta(seconds=1))
    return float((second - first).total_seconds())
