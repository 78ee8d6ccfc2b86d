"""The /metrics exposition: byte for byte what prometheus_client's ``generate_latest`` writes
less the ``_created`` series, as series appear and values change between scrapes."""

from __future__ import annotations

import math
import re

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics import MetricWrapperBase

from bridge.metrics import Exposition, Metrics

CREATED = re.compile(rb"^(# (HELP|TYPE) )?\w+_created[ {].*\n", re.MULTILINE)


def expected(registry: CollectorRegistry) -> bytes:
    """``generate_latest`` without the ``_created`` series (help, type and samples)."""
    return CREATED.sub(b"", generate_latest(registry))


def bridge_at_scale(metrics: Metrics, devices: int) -> None:
    """The series a bridge with ``devices`` 2N intercoms has after events and commands."""
    metrics.build_info.info({"version": "0.1.0"})
    for i in range(devices):
        device = f"n{devices}-{i:04d}"
        metrics.device_up.labels(device=device, driver="2n").set(1)
        metrics.device_failures.labels(device=device).set(0)
        for kind in ("device.started", "button.pressed", "button.released"):
            metrics.events.labels(device=device, type=kind).inc(i % 7 + 1)
        if i % 2:
            metrics.commands.labels(device=device, command="open_door", status="ok", code="").inc()
    metrics.event_latency.labels(driver="2n").observe(0.003)
    metrics.device_requests.labels(driver="2n").observe(0.02)
    metrics.command_duration.labels(command="open_door").observe(0.004)
    metrics.mqtt_publishes.labels(retained="false").inc(12345)
    metrics.mqtt_connected.set(1)
    metrics.outbox_depth.set(3)


def test_the_bridge_exposition_is_generate_latest_byte_for_byte() -> None:
    metrics = Metrics()
    assert metrics.exposition() == expected(metrics.registry)  # no series yet
    bridge_at_scale(metrics, 50)
    first = metrics.exposition()
    assert first == expected(metrics.registry)
    assert b'bridge_events_total{device="n50-0007",type="button.pressed"} 1.0\n' in first
    assert b"_created" not in first
    assert b"bridge_command_duration_seconds_count" in first

    # Between scrapes: values change, series appear, others stay as they were.
    metrics.events.labels(device="n50-0007", type="button.pressed").inc(2)
    metrics.device_up.labels(device="n50-0003", driver="2n").set(0)
    metrics.device_errors.labels(device="n50-0003", kind="unreachable").inc()
    metrics.events.labels(device="late", type="vendor").inc()
    second = metrics.exposition()
    assert second == expected(metrics.registry)
    assert b'bridge_events_total{device="n50-0007",type="button.pressed"} 3.0\n' in second
    assert b'bridge_device_up{device="n50-0003",driver="2n"} 0.0\n' in second
    assert b'bridge_device_errors_total{device="n50-0003",kind="unreachable"} 1.0\n' in second


VALUES = [0.0, 1.0, -1.0, 0.1, 2.5e-7, 1234567.0, 1e21, math.inf, -math.inf, 17.0 / 3]


@pytest.mark.parametrize("value", VALUES)
def test_values_are_formatted_as_prometheus_client_does(value: float) -> None:
    registry = CollectorRegistry()
    gauge = Gauge("g", "a gauge", ["device"], registry=registry)
    gauge.labels(device="d").set(value)
    exposition = Exposition([gauge])
    assert exposition.render() == expected(registry)
    gauge.labels(device="d").set(value / 3)  # after the value cache has seen the first
    assert exposition.render() == expected(registry)


def test_nan_is_written_as_prometheus_client_does() -> None:
    registry = CollectorRegistry()
    gauge = Gauge("g", "a gauge", ["device"], registry=registry)
    gauge.labels(device="d").set(math.nan)
    assert Exposition([gauge]).render() == expected(registry)


LABEL_VALUES = ["plain", 'quote "q"', "back\\slash", "line\nfeed", "ünïcode ☃", "", "a,b=c}"]


@pytest.mark.parametrize("label", LABEL_VALUES)
def test_label_values_are_escaped_as_prometheus_client_does(label: str) -> None:
    registry = CollectorRegistry()
    counter = Counter(
        "c", 'help with "quotes", \\ and\nlines', ["b_label", "a_label"], registry=registry
    )
    counter.labels(b_label=label, a_label="x").inc()
    assert Exposition([counter]).render() == expected(registry)


def test_a_series_removed_and_made_again_is_the_new_one() -> None:
    registry = CollectorRegistry()
    counter = Counter("c", "a counter", ["device"], registry=registry)
    counter.labels(device="d").inc(5)
    exposition = Exposition([counter])
    assert b'c_total{device="d"} 5.0' in exposition.render()
    counter.remove("d")
    counter.labels(device="d").inc()
    rendered = exposition.render()
    assert rendered == expected(registry)
    assert b'c_total{device="d"} 1.0' in rendered


def test_every_kind_of_metric_in_registry_order() -> None:
    registry = CollectorRegistry()
    made: list[MetricWrapperBase] = [
        Gauge("plain_gauge", "unlabelled", registry=registry),
        Counter("labelled", "labelled counter", ["k"], registry=registry),
        Histogram("hist", "a histogram", ["k"], buckets=(0.1, 1.0), registry=registry),
        Counter("plain_counter", "unlabelled counter", registry=registry),
        Gauge("empty", "labelled, no series", ["k"], registry=registry),
    ]
    made[1].labels(k="x").inc()  # type: ignore[attr-defined]
    made[2].labels(k="x").observe(0.5)  # type: ignore[attr-defined]
    assert Exposition(made).render() == expected(registry)
