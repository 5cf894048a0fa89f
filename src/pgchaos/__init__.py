"""pgchaos: the client's view of a PostgreSQL HA chaos experiment.

Commands (see ``pgchaos --help``):

``pgchaos load``
    Runs writers and readers against a read-write and a read-only endpoint and
    records every operation into a *run folder*.
``pgchaos verify RUN``
    Reads back every write the run recorded and classifies it (lost, ghost, ...).
``pgchaos report RUN``
    Writes ``summary.json``, PNG plots and a self-contained ``report.html``.
``pgchaos logs --inventory INV RUN``
    Collects journald logs, ``patronictl`` and ``etcdctl`` output over SSH.
``pgchaos combine OUT RUN [RUN ...]`` (or ``--runs-dir DIR``)
    Writes ``OUT/index.html`` and ``OUT/results.json``: one row per run with its
    scenario, expectations, verdict and headline figures (see :mod:`pgchaos.combine`).

Typical use::

    pgchaos load --duration 10m                 # endpoints from .lab/client.env
    pgchaos load --rw 'host=10.0.0.10 port=5000 user=app' --ro 'host=10.0.0.10 port=5001 user=app' \
                 --writers 4 --readers 2 --rate 50 --out runs/primary-kill
    pgchaos verify runs/primary-kill            # exit 1 if an acknowledged write was lost
    pgchaos report runs/primary-kill            # summary.json, plots/*.png, report.html
    pgchaos logs --inventory inventory/lab/hosts.yml runs/primary-kill
    pgchaos combine runs/site --runs-dir runs    # runs/site/index.html over every run
    pgchaos load --duration 1h --pid-file /tmp/load.pid --out runs/x &   # later:
    kill -INT "$(cat /tmp/load.pid)"            # ends the run cleanly, like Ctrl-C

``--rate`` is per worker (writers and readers alike); ``--rate 0`` runs as fast as
possible.  Bad input (unparsable DSN, unreachable endpoint at start, missing or
damaged run folder, unusable ``--out``) ends with one line on stderr and exit 2.

Run folder layout
-----------------
``run.json``
    Metadata: run id, start/end (ISO-8601 UTC), endpoints without passwords,
    the options used, the env file the endpoints came from, final counters.
``records.csv``
    One row per operation, streamed and flushed while the run goes on.  Columns:

    ``time``        epoch seconds when the operation started
    ``endpoint``    ``rw`` (writers), ``ro`` (readers) or ``rwr`` (readers on the
                    write port, checked for read-your-writes)
    ``kind``        ``write``, ``read`` or ``connect`` (a (re)connection attempt)
    ``worker``      worker number within its endpoint
    ``latency_ms``  duration of the operation
    ``outcome``     ``ok`` (for a write: acknowledged), ``failed``, or ``in_doubt``
                    (a write whose commit was sent but whose connection died before
                    the answer came back)
    ``error_class`` empty, ``refused``, ``connection_lost``, ``read_only``,
                    ``timeout`` or ``other`` (see :mod:`pgchaos.classify`)
    ``server``      ``addr:port`` of the server the connection was talking to
    ``role``        ``primary`` or ``replica`` (``pg_is_in_recovery()``)
    ``timeline``    the server's timeline
    ``id``/``seq``  the client-generated row id and per-writer sequence of a write
    ``lsn``         on reads: the server's WAL position (replay position on a replica)
    ``seen``        on reads: for each writer of the run, the highest ``seq`` the read
                    could see, space-separated (see :mod:`pgchaos.reads`)
    ``error``       first line of the error message
``events.jsonl``
    Chaos actions, appended by whoever causes them (the chaos playbooks).  One
    JSON object per line::

        {"time": "2026-11-29T18:08:58Z", "action": "kill", "target": "pg1",
         "scenario": "primary-crash", "detail": "kill -9 postmaster"}

    ``time`` is ISO-8601 (a timestamp without a zone is taken as UTC) or epoch
    seconds (number or numeric string); ``action`` and ``target`` are required
    strings, ``scenario`` and ``detail`` optional.  Lines that do not parse are
    reported and ignored by ``pgchaos report``.
``expectations.json``
    Written by the chaos playbooks, read by ``pgchaos combine``::

        {"scenario": "patroni-leader-node",
         "expectations": [{"name": "...", "expected": "...", "observed": "...",
                           "passed": true}]}

``verify.json``, ``summary.json``, ``report.html``, ``plots/*.png``, ``logs/<host>/``
    Written by ``verify``, ``report`` and ``logs``.

Split brain
-----------
A *primary term* is a (server, timeline) pair that acknowledged writes on the rw
endpoint; a server that is primary again after a failover is on a new timeline,
so a term is never legitimately interrupted.  Each write committed somewhere
between the start and the completion of its operation.  ``summary.json`` reports
``split_brain: true`` when an acknowledgement of one server certainly committed
inside the term of another server: after one of that term's commits was
acknowledged and before another of its commits was sent.  ``split_brain_overlaps``
lists each such pair of terms with the window and the interleaved counts;
``primary_periods`` lists the terms.  Overlaps within latency are not counted.

Failover layers
---------------
``summary.json`` ``layers`` breaks the write gap after the fault down with the
logs collected by ``pgchaos logs``: lease expiry / detection, election +
promotion, HAProxy detection, client reconnect; ``failover_milestones`` holds the
log lines used.  Missing data gives ``seconds: null`` and a ``reason``.  The
patterns are listed in :mod:`pgchaos.layers`.

Unavailability (client-observed RTO)
------------------------------------
For each endpoint, operations (reads and writes; failed connection attempts
count as failures) are ordered by completion time.  An *unavailability window*
runs from the completion of the last successful operation before a failure to
the completion of the next successful operation.  If no success precedes the
failure the window starts at the run start; if none follows it, the window ends
at the run end and is marked ``recovered: false``.  The client-observed RTO of
an endpoint is its longest window; *total error time* is the sum of all its
windows.  See :func:`pgchaos.summary.summarize`, which the chaos playbooks can
call to get the headline figures as a dict.
"""

__version__ = "0.1.0"
