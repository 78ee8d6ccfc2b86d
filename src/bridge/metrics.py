"""Prometheus metrics (spec §8), on a registry of our own: no module-level state.

Labels are bounded: ``device`` is a configured device id, ``type`` an event type of the §4.1
vocabulary (every ``vendor.*`` type is counted as ``vendor``), ``command`` a catalogue name.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.openmetrics.exposition import escape_label_name, escape_metric_name
from prometheus_client.utils import floatToGoString

from bridge.model import EVENT_TYPES, VENDOR_PREFIX

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
REQUEST_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# Sub-millisecond while the broker keeps up; seconds to minutes during an outage.
QUEUE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.1, 1, 10, 60)


def event_type_label(event_type: str) -> str:
    if event_type in EVENT_TYPES:
        return event_type
    return VENDOR_PREFIX.rstrip(".") if event_type.startswith(VENDOR_PREFIX) else "other"


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.build_info = Info("bridge_build", "Version of the running bridge", registry=r)
        self.device_up = Gauge(
            "bridge_device_up", "1 when the device is online", ["device", "driver"], registry=r
        )
        self.device_failures = Gauge(
            "bridge_device_consecutive_failures",
            "Failures of the device channel since it last worked",
            ["device"],
            registry=r,
        )
        self.events = Counter(
            "bridge_events", "Events published, by type", ["device", "type"], registry=r
        )
        self.events_duplicate = Counter(
            "bridge_events_duplicate",
            "Events dropped because their id was already published",
            ["device"],
            registry=r,
        )
        self.event_latency = Histogram(
            "bridge_event_latency_seconds",
            "Time from the device's event time to the hand-over to MQTT",
            ["driver"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.device_requests = Histogram(
            "bridge_device_request_duration_seconds",
            "Duration of vendor HTTP requests (long polls excluded)",
            ["driver"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.device_errors = Counter(
            "bridge_device_errors",
            "Device failures by kind (unreachable, auth, protocol, internal)",
            ["device", "kind"],
            registry=r,
        )
        self.pushes = Counter(
            "bridge_device_pushes",
            "Accepted pushes (/push/<device>/<token>) that woke a device's poller",
            ["device"],
            registry=r,
        )
        self.records_rejected = Counter(
            "bridge_device_records_rejected",
            "Vendor event records that could not be understood: logged and skipped",
            ["device"],
            registry=r,
        )
        self.commands = Counter(
            "bridge_commands",
            "Commands handled, by result status and error code",
            ["device", "command", "status", "code"],
            registry=r,
        )
        self.command_duration = Histogram(
            "bridge_command_duration_seconds",
            "Time from command receipt to result",
            ["command"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.mqtt_connected = Gauge(
            "bridge_mqtt_connected", "1 while connected to the broker", registry=r
        )
        self.mqtt_reconnects = Counter(
            "bridge_mqtt_reconnects", "Broker connections lost", registry=r
        )
        self.mqtt_publishes = Counter(
            "bridge_mqtt_publishes",
            "Messages acknowledged by the broker (retained or not)",
            ["retained"],
            registry=r,
        )
        self.mqtt_received = Counter(
            "bridge_mqtt_received",
            "Inbound messages, by what became of them",
            ["outcome"],
            registry=r,
        )
        self.mqtt_queue = Histogram(
            "bridge_mqtt_queue_seconds",
            "Time an event or command result waited in the outbox before its PUBLISH was sent",
            buckets=QUEUE_BUCKETS,
            registry=r,
        )
        self.outbox_depth = Gauge(
            "bridge_outbox_depth", "Messages waiting for the broker", registry=r
        )
        self.outbox_dropped = Counter(
            "bridge_outbox_dropped",
            "Messages given up: the oldest when the outbox was full, or one the client refused",
            registry=r,
        )

        self._exposition = Exposition(
            [m for m in vars(self).values() if isinstance(m, MetricWrapperBase)]
        )

    def exposition(self) -> bytes:
        """Every metric in the Prometheus text format (version 0.0.4), as ``generate_latest``
        of the registry writes it less the ``_created`` series; a few milliseconds at 1,000
        devices (see :class:`Exposition`)."""
        return self._exposition.render()


def _label_value(value: str) -> str:
    """A label value in the text format: backslash, line feed and double quote escaped."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _help(name: str, documentation: str, kind: str) -> str:
    text = documentation.replace("\\", r"\\").replace("\n", r"\n")
    name = escape_metric_name(name)
    return f"# HELP {name} {text}\n# TYPE {name} {kind}\n"


class _Series:
    """The series of one labelled counter or gauge, the text of their labels made once each."""

    def __init__(self, metric: Counter | Gauge) -> None:
        self.metric = metric
        described = next(iter(metric.describe()))
        kind = described.type
        self.name = f"{described.name}_total" if kind == "counter" else described.name
        self.head = _help(self.name, described.documentation, kind)
        self.known: dict[Sequence[str], tuple[object, str]] = {}  # values -> (child, "name{…} ")

    def render(self, out: list[str], number: Callable[[float], str]) -> None:
        out.append(self.head)
        children: list[tuple[Sequence[str], Any]] = list(self.metric._metrics.items())  # noqa: SLF001 - see Exposition
        for values, child in children:
            known = self.known.get(values)
            if known is None or known[0] is not child:
                names = self.metric._labelnames  # noqa: SLF001 - see Exposition
                labels = ",".join(
                    f'{escape_label_name(k)}="{_label_value(v)}"'
                    for k, v in sorted(zip(names, values, strict=True))
                )
                known = self.known[values] = (
                    child,
                    f"{escape_metric_name(self.name)}{{{labels}}} ",
                )
            out.append(f"{known[1]}{number(child._value.get())}\n")  # noqa: SLF001


class _Whole:
    """A metric ``generate_latest`` renders on its own (histograms, info, unlabelled metrics:
    a few series each), less its ``_created`` series."""

    def __init__(self, metric: MetricWrapperBase) -> None:
        self.metric = metric
        created = f"{next(iter(metric.describe())).name}_created"
        self.created = (f"# HELP {created} ", f"# TYPE {created} ", f"{created}{{", f"{created} ")

    def render(self, out: list[str], _: Callable[[float], str]) -> None:
        text = generate_latest(self.metric).decode()
        out.extend(
            line for line in text.splitlines(keepends=True) if not line.startswith(self.created)
        )


class Exposition:
    """``metrics`` (in their registry's order) in the Prometheus text format as
    ``generate_latest`` of the registry writes it, without the ``_created`` series, in a fraction
    of its time.

    ``generate_latest`` builds every sample anew at each scrape and escapes and sorts the labels
    of each, about 5 µs a series: 50-90 ms for the ~9,000 series of 1,000 devices, every scrape a
    stall of the event loop and of every device with it. Here the text of a labelled counter's or
    gauge's series (the per-device ones) is made once, when the series first shows up; a scrape
    formats the values only (through a cache: most are small counts). The rest goes through
    ``generate_latest`` a metric at a time. The ``_created`` series (when each counter and
    histogram series was made: one more series for each, a third of the text at 1,000 devices,
    and as many series more in Prometheus) are left out.

    Reads what prometheus_client keeps but does not document, as its own ``collect`` does: a
    labelled metric's children (``_metrics``), their label names (``_labelnames``) and a child's
    value (``_value.get()``); tests/unit/test_metrics.py holds the output to ``generate_latest``'s.
    """

    def __init__(self, metrics: Iterable[MetricWrapperBase]) -> None:
        self._parts: list[_Series | _Whole] = [
            _Series(m) if isinstance(m, Counter | Gauge) and hasattr(m, "_metrics") else _Whole(m)
            for m in metrics
        ]
        self._number: Callable[[float], str] = functools.lru_cache(maxsize=4096)(floatToGoString)

    def render(self) -> bytes:
        out: list[str] = []
        for part in self._parts:
            part.render(out, self._number)
        return "".join(out).encode()
