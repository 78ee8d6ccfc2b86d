"""Scale of one bridge process: many simulated devices, a real broker, QoS 1.

Separate processes: mosquitto (:mod:`~bench.scale.peers`), simulator processes each serving
many devices of one kind on their own loopback ports (:mod:`~bench.scale.simulators`), the bridge
(``bridge run`` on a generated configuration, under :mod:`~bench.scale.gcwatch`, which times its
garbage collections) and the benchmark itself as the MQTT consumer. Parts:

- :mod:`~bench.scale.scenarios`: N 2N intercoms (long polls): time until every device is
  ``online``, idle RSS and CPU, the collector's heap, events at QoS 1 at increasing rates (loss,
  duplicates, rate achieved while emitting, latency, GC pauses), ``open_door`` round trips, and
  ``/metrics`` scrapes with the event-loop stall they cause;
- :mod:`~bench.scale.polled`: N Onetouch, Ultra Stream or Grandstream devices at
  ``poll_interval: 1s``: start-up, then the bridge's CPU per poll and per device request;
- :mod:`~bench.scale.report`: every throughput figure as a ratio to the raw aiomqtt QoS 1
  ceiling measured through the same broker in the same run, beside the absolute figure;
- :mod:`~bench.scale.profile`: py-spy per phase (``--py-spy DIR``).

Every phase has a deadline; child processes are stopped on exit, Ctrl-C and SIGTERM. Results: the
tables on stdout and JSON in ``bench/results/`` (git-ignored); the recorded figures are in
docs/performance.md. From the repository root:

    .venv/bin/python -m bench.scale            # 100 and 1,000 devices of each kind, minutes
    .venv/bin/python -m bench.scale --quick    # 10 and 100 devices, shorter phases
"""
