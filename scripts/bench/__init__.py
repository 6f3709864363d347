"""Benchmarks for kombu-worker (issues 5 and 11): overhead, SQS requests, concurrency, batching,
memory, and the device duty cycle.

One invocation runs every section, prints a table, and writes ``bench.json`` and ``bench.png``
to ``--out-dir`` (default ``bench-out/``, gitignored)::

    python scripts/services.py --no-postgres -- python scripts/bench.py      # full run
    python scripts/bench.py --quick                                           # a smaller one
    python scripts/bench.py --quick --only a                                  # one section

Each section runs in its own child process, so that one cannot skew another. Targets are
printed beside the figures; nothing is asserted. ``--profile`` adds an unmeasured kombu-worker
run to section a, sampled by py-spy (all threads), and writes the hot spots to
``profile-a-kombu-worker*.txt`` (and the collapsed stacks beside them).

The package:

- ``cli``: flags, the parent that runs each section in a child, the child itself;
- ``sections``: the registry (run, table and chart order);
- ``section_<key>``: one module per section (a overhead, b SQS requests, c concurrency,
  d batching, e memory, f device duty), each defining ``SECTION``: its run, table rows, chart
  and targets; ``section_a_celery`` holds a's Celery rows and ``section_f_moto`` f's run
  over moto;
- ``settings``: the knobs and their ``--quick`` values; ``common``: message seeding, the
  clock, polling, temporary folders; ``hooks``: the hooks under test and the latency they
  inject; ``backends``: storages and moto's server; ``latency``: section f's backends with
  injected latency and its simulated device; ``workers``: a kombu-worker or a Celery worker
  in this process; ``proxy``: the counting (and, for f, latency-adding) HTTP proxy in front
  of moto; ``profiling``: py-spy; ``report``: the table and the chart.

A new section is a module ``section_<key>.py`` defining ``SECTION`` plus its key in
``sections.ORDER``. Its own knobs may live in its module (read ``settings.quick`` for the
smaller run).
"""
