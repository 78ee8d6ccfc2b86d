"""The composition root: settings in, a running bridge out. No module-level state."""

from __future__ import annotations

import gc
import hashlib
import hmac
import signal
import socket
import time
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio
import structlog

from bridge import __version__
from bridge.commands import request_id
from bridge.config import PolledDeviceConfig, listen_host, listen_port
from bridge.drivers import build_driver
from bridge.drivers.base import DriverContext
from bridge.errors import StartupError
from bridge.httpd import EVERY_ROUTE, MONITORING, PUSH_ONLY, HttpApp, Limits, serve
from bridge.metrics import Metrics
from bridge.model import BridgeResponse, CommandResult, ErrorInfo, format_time, utcnow
from bridge.mqtt import render
from bridge.mqtt.discovery import cleared, device_discovery, discovery_topic, stale_topics
from bridge.mqtt.ledger import Ledger, ledger_path
from bridge.mqtt.link import MqttLink
from bridge.mqtt.store import store_path
from bridge.mqtt.topics import Topics
from bridge.shard import shard_of
from bridge.supervisor import DeviceWorker
from bridge.systemd import Notifier

if TYPE_CHECKING:
    from bridge.config import HttpConfig
    from bridge.mqtt.message import Received
    from bridge.mqtt.topics import Inbound
    from bridge.settings import Settings

log = structlog.get_logger("bridge")

SHUTDOWN_FLUSH = 5.0
SETTLE_AFTER = 60.0  # seconds: freeze the heap by then even if some devices are down
HEARTBEAT_STALE = 10.0


def default_client_id(settings: Settings) -> str:
    suffix = f"-{settings.shard.index}" if settings.shard.count > 1 else ""
    return f"bridge-{socket.gethostname()}{suffix}"


def config_summary(settings: Settings) -> dict[str, Any]:
    """What ``bridge/info`` says about the configuration: no credentials, no secrets."""
    mqtt = settings.mqtt
    return {
        "mqtt": {
            "broker": f"{urlsplit(mqtt.url).scheme}://{mqtt.host}:{mqtt.port}",
            "base_topic": mqtt.base_topic,
            "qos": mqtt.qos,
            "protocol": mqtt.protocol,
        },
        "homeassistant": settings.homeassistant.enabled,
        "devices": [
            {"id": d.id, "driver": d.driver, "host": urlsplit(d.url).hostname}
            for d in settings.devices
        ],
    }


def http_listeners(http: HttpConfig) -> list[tuple[str, str, frozenset[str]]]:
    """``(key, host:port, routes)`` of each HTTP listener: ``listen`` serves every route, or all
    but the push receivers when ``push_listen`` is set, which then serves them alone."""
    if http.push_listen is None:
        return [("listen", http.listen, EVERY_ROUTE)]
    return [("listen", http.listen, MONITORING), ("push_listen", http.push_listen, PUSH_ONLY)]


@dataclass
class Bridge:
    """A configured bridge. ``run`` serves until ``stop`` is set or a signal arrives."""

    settings: Settings
    metrics: Metrics = field(default_factory=Metrics)
    handle_signals: bool = False
    stop: anyio.Event = field(default_factory=anyio.Event)
    started: anyio.Event = field(default_factory=anyio.Event)  # serving: HTTP bound, link up
    started_at: str = field(default_factory=lambda: format_time(utcnow()))
    http_port: int | None = None  # bound port of http.listen
    push_port: int | None = None  # bound port of http.push_listen, when set
    heartbeat: float = field(default_factory=time.monotonic)
    heartbeat_interval: float = 1.0
    notifier: Notifier = field(default_factory=Notifier)

    def __post_init__(self) -> None:
        mqtt = self.settings.mqtt
        shard = self.settings.shard
        self.topics = Topics(mqtt.base_topic, shard.index if shard.count > 1 else None)
        self.client_id = mqtt.client_id or default_client_id(self.settings)
        self.link = MqttLink(
            mqtt,
            client_id=self.client_id,
            will=render.bridge_state(self.topics, online=False, qos=1),
            subscriptions=self._subscriptions(),
            metrics=self.metrics,
            store=store_path(self.settings.state_dir, shard.index),
        )
        shard = self.settings.shard
        mine = [
            d
            for d in self.settings.devices
            if d.enabled and shard_of(d.id, shard.count) == shard.index
        ]
        self.contexts = {
            d.id: DriverContext(
                device=d.id,
                metrics=self.metrics,
                state_dir=self.settings.state_dir,
                room=self.link.room,
            )
            for d in mine
        }
        self.workers = {
            d.id: DeviceWorker(
                d,
                build_driver(d, self.contexts[d.id]),
                publish=self.link.publish,
                topics=self.topics,
                metrics=self.metrics,
                qos=mqtt.qos,
                discover=self._discover if self.settings.homeassistant.enabled else None,
                snapshot_base64=mqtt.snapshot_base64,
            )
            for d in mine
        }
        self.metrics.build_info.info({"version": __version__})
        self._ledger = Ledger(ledger_path(self.settings.state_dir, shard.index))
        self._discovered: dict[str, bytes] = {}  # device → digest of its last discovery config

    def _discover(self, worker: DeviceWorker) -> None:
        """Publish the device's discovery config, when it differs from the last one."""
        if worker.info is None:
            return
        message = device_discovery(
            self.topics,
            prefix=self.settings.homeassistant.prefix,
            device=worker.id,
            name=worker.config.name,
            info=worker.info,
            state=worker.state,
            events=worker.driver.events,
            version=__version__,
        )
        digest = hashlib.blake2b(message.payload, digest_size=16).digest()
        if self._discovered.get(worker.id) == digest:
            return
        self._discovered[worker.id] = digest
        self._ledger.add(message.topic)  # before it can reach the broker: never one unlisted
        self.link.publish(message)

    def _clear_removed(self) -> None:
        """Empty the discovery configs published for devices no longer configured (or enabled),
        so Home Assistant removes them; all of them when discovery is off."""
        ha = self.settings.homeassistant
        keep = (
            [discovery_topic(ha.prefix, d.id) for d in self.settings.devices if d.enabled]
            if ha.enabled
            else []
        )
        stale = stale_topics(self._ledger.topics, keep)
        for topic in stale:
            self.link.publish(cleared(topic))
        if stale:
            log.info("discovery_cleared", configs=len(stale))
        self._ledger.drop(stale)

    # -- life cycle --------------------------------------------------------------------------

    async def run(self) -> None:
        qos = self.settings.mqtt.qos
        async with anyio.create_task_group() as tg:
            if self.settings.http.enabled:
                await self._serve_http(tg)
            await tg.start(self.link.run)
            self.link.publish(render.bridge_state(self.topics, online=True, qos=1))
            self._clear_removed()
            self.link.publish(
                render.retained_json(self.topics.bridge_info, self.info_payload(), qos=qos)
            )
            for worker in self.workers.values():
                worker.publish_availability()
            self._warn_insecure()
            log.info(
                "bridge_started",
                version=__version__,
                devices=len(self.workers),
                shard=f"{self.settings.shard.index}/{self.settings.shard.count}",
            )
            async with anyio.create_task_group() as devices:
                for worker in self.workers.values():
                    devices.start_soon(worker.supervise, name=f"device:{worker.id}")
                devices.start_soon(self._route, devices, name="router")
                devices.start_soon(self._beat, name="heartbeat")
                devices.start_soon(self.notifier.watchdog, self._alive, name="watchdog")
                self.notifier.notify("READY=1", f"STATUS=serving {len(self.workers)} devices")
                gc.freeze()  # config, drivers, clients: see _settle
                devices.start_soon(self._settle, name="settle")
                self.started.set()
                if self.handle_signals:
                    devices.start_soon(self._signals, name="signals")
                await self.stop.wait()
                log.info("bridge_stopping")
                self.notifier.notify("STOPPING=1")
                devices.cancel_scope.cancel()
            await self._shutdown()
            tg.cancel_scope.cancel()

    async def _serve_http(self, tg: anyio.abc.TaskGroup) -> None:
        for key, listen, routes in http_listeners(self.settings.http):
            app = self.http_app(routes)
            host, port = listen_host(listen), listen_port(listen)
            try:
                bound = await tg.start(partial(serve, app, host, port, limits=app.limits))
            except OSError as exc:
                raise StartupError(f"http.{key} {listen}: {exc.strerror}") from None
            if key == "listen":
                self.http_port = bound
            else:
                self.push_port = bound

    def _warn_insecure(self) -> None:
        mqtt = self.settings.mqtt
        if mqtt.uses_tls and mqtt.tls.insecure:
            log.warning(
                "mqtt_tls_insecure",
                broker=f"{mqtt.host}:{mqtt.port}",
                hint="the broker's host name is not verified (mqtt.tls.insecure)",
            )
        for worker in self.workers.values():
            if worker.config.url.startswith("https") and not worker.config.tls.verify:
                log.warning("device_tls_unverified", device=worker.id, hint="set tls.ca_file")

    async def _shutdown(self) -> None:
        for worker in self.workers.values():
            worker.stopped()
        self.link.publish(render.bridge_state(self.topics, online=False, qos=1))
        # Flush for up to SHUTDOWN_FLUSH (at once when the broker is away: nothing can leave).
        # What is not acknowledged by then is not lost: durable events wait in the store, and
        # devices replay the others, because their checkpoints only moved past acknowledged ones.
        with anyio.move_on_after(SHUTDOWN_FLUSH):
            await self.link.close()
        backlog = self.link.backlog()
        if backlog.pending:
            log.warning(
                "shutdown_flush_incomplete",
                kept=backlog.kept,
                replayable=backlog.replayable,
                lost=backlog.lost,
                pending=backlog.pending,
            )
        log.info("bridge_stopped")

    async def _signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                log.info("signal_received", signal=signal.Signals(signum).name)
                self.stop.set()
                return

    async def _settle(self) -> None:
        """Once every device is online (or after a minute), freeze the heap again: the sessions,
        connections and channels made by then live as long as the bridge, and left to the
        collector they make each full pass take 100-220 ms at 1000 devices, a stall for all."""
        with anyio.move_on_after(SETTLE_AFTER):
            while not all(worker.online for worker in self.workers.values()):  # noqa: ASYNC110 - polls state the workers own
                await anyio.sleep(1)
        gc.freeze()
        log.debug("heap_frozen", objects=gc.get_freeze_count())

    async def _beat(self) -> None:
        while True:
            self.heartbeat = time.monotonic()
            await anyio.sleep(self.heartbeat_interval)

    # -- inbound MQTT ------------------------------------------------------------------------

    async def _route(self, tg: anyio.abc.TaskGroup) -> None:
        with self.link.inbound:
            async for message in self.link.inbound:
                self._dispatch(message, tg)

    def _subscriptions(self) -> tuple[str, ...]:
        ha = self.settings.homeassistant
        return (*self.topics.subscriptions, *([f"{ha.prefix}/status"] if ha.enabled else []))

    def _dispatch(self, message: Received, tg: anyio.abc.TaskGroup) -> None:
        target = self.topics.parse(message.topic)
        outcome = "ignored"
        ha = self.settings.homeassistant
        if ha.enabled and message.topic == f"{ha.prefix}/status":
            if message.payload.strip().lower() == b"online":
                # Home Assistant restarted: it needs discovery and the current state again.
                outcome = "homeassistant_birth"
                self.link.republish(f"{ha.prefix}/")
                self.link.republish(f"{self.topics.base}/")
        elif target is None:
            pass
        elif message.retain:
            # A retained command would fire again at every restart: never act on one.
            outcome = "retained_ignored"
            log.warning("retained_command_ignored", topic=message.topic)
            self._refuse_retained(target, message)
        elif target.kind == "request":
            outcome = "request"
            self._answer_request(target.target, message)
        elif (worker := self.workers.get(target.target)) is None:
            outcome = "unknown_device"  # another shard's device, or none at all
        else:
            outcome = "command"
            tg.start_soon(worker.handle_command, message)
        self.metrics.mqtt_received.labels(outcome=outcome).inc()

    def _refuse_retained(self, target: Inbound, message: Received) -> None:
        error = ErrorInfo(
            code="retained",
            message="retained commands are ignored; publish commands without the retain flag",
        )
        id_ = request_id(message.payload)
        qos = self.settings.mqtt.qos
        if target.kind == "request":
            response = BridgeResponse(id=id_, status="error", error=error)
            topic = self.topics.bridge_response(target.target)
            self.link.publish(render.result(topic, response, qos=qos))
        elif target.target in self.workers:
            result = CommandResult(id=id_, status="error", error=error)
            topic = self.topics.command_result(target.target)
            self.link.publish(render.result(topic, result, qos=qos))

    def _answer_request(self, action: str, message: Received) -> None:
        id_ = request_id(message.payload)
        handlers = {
            "health_check": self.health,
            "info": self.info_payload,
            "devices": self.devices_payload,
        }
        handler = handlers.get(action)
        if handler is None:
            response = BridgeResponse(
                id=id_,
                status="error",
                error=ErrorInfo(
                    code="unknown_action",
                    message=f"unknown action {action!r}; known: {', '.join(sorted(handlers))}",
                ),
            )
        else:
            response = BridgeResponse(id=id_, status="ok", data=handler())
        qos = self.settings.mqtt.qos
        self.link.publish(render.result(self.topics.bridge_response(action), response, qos=qos))
        if message.response_topic:
            self.link.publish(
                render.result(
                    message.response_topic, response, qos=qos, correlation=message.correlation
                )
            )

    # -- push receivers ----------------------------------------------------------------------

    def push(self, device: str, token: str) -> bool:
        """A device called ``/push/<device>/<token>``: wake its poller if the token is right.

        False for an unknown device, another shard's device, a device without ``push_token``
        and a wrong token alike (the caller answers 404 for all of them). The comparison takes
        the same time wherever the tokens differ.
        """
        worker = self.workers.get(device)
        config = worker.config if worker is not None else None
        expected = config.push_token if isinstance(config, PolledDeviceConfig) else None
        if expected is None:
            return False
        if not hmac.compare_digest(token.encode(), expected.get_secret_value().encode()):
            return False
        self.contexts[device].wakeup.set()
        self.metrics.pushes.labels(device=device).inc()
        return True

    def http_app(self, routes: frozenset[str] = EVERY_ROUTE) -> HttpApp:
        """An app of the HTTP server (``bridge.httpd``) serving ``routes`` of this bridge's
        metrics, health, readiness and push receivers (see :func:`http_listeners`)."""
        http = self.settings.http
        return HttpApp(
            metrics=self.metrics.exposition,
            health=self.health,
            ready=lambda: self.link.connected,
            push=self.push,
            limits=Limits(timeout=http.timeout, max_connections=http.max_connections),
            serves=routes,
        )

    # -- views -------------------------------------------------------------------------------

    def _alive(self) -> bool:
        return time.monotonic() - self.heartbeat < HEARTBEAT_STALE

    def info_payload(self) -> dict[str, Any]:
        return {
            "version": __version__,
            "started_at": self.started_at,
            "client_id": self.client_id,
            "shard": {"index": self.settings.shard.index, "count": self.settings.shard.count},
            "devices": sorted(self.workers),
            "config": config_summary(self.settings),
        }

    def devices_payload(self) -> dict[str, Any]:
        return {"devices": [w.info_payload() for w in self.workers.values()]}

    def health(self) -> dict[str, Any]:
        return {
            "healthy": self._alive(),
            "mqtt_connected": self.link.connected,
            "devices": {w.id: bool(w.online) for w in self.workers.values()},
        }
