"""Prometheus metrics (spec §8), on a registry of our own: no module-level state.

Labels are bounded: ``device`` is a configured device id, ``type`` an event type of the §4.1
vocabulary (every ``vendor.*`` type is counted as ``vendor``), ``command`` a catalogue name.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.exposition import generate_latest

from bridge.model import EVENT_TYPES, VENDOR_PREFIX

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
            "Oldest messages dropped when the outbox was full",
            registry=r,
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
