"""Peer benchmark: Celery 5.x with Redis, the cases `cargo xtask bench engine` runs on Tessera.

This file is both the Celery app the worker imports and the client that submits and times the
work. It starts nothing: `cargo xtask bench engine --with-celery` (xtask/src/bench.rs) starts a
private redis-server and a real worker, then runs this script. By hand:

    redis-server --port 6390 --save '' --appendonly no &
    celery -A celery_bench --workdir xtask/peers -b redis://127.0.0.1:6390/0 \
        --result-backend redis://127.0.0.1:6390/0 worker --pool=prefork --concurrency=2 &
    python3 xtask/peers/celery_bench.py --redis redis://127.0.0.1:6390/0 [--runs 5] [--quick]

Worker: the stock production setting, the prefork pool with one process per core
(`--concurrency=2` on the 2-core bench machine), every other option at Celery's default
(prefetch multiplier 4, early acks, gossip/mingle/heartbeat on). Broker and result backend are
both the given Redis (the chord counter then uses Redis' native chord support).

Cases, in this order, each timed from the first `apply_async` to the callback's (or last
step's) result being received by this client (so building and publishing the messages counts),
median of the runs. Chords also report when the callback finished in the worker (its own
clock reading, same machine): the client learns each header task's result over Redis pub/sub
(it subscribes to every one), and under load that alone can take minutes for 10 000 tasks.
- chain of 40 no-op tasks, reported in ms per step (total / 40);
- chord of 1 000 no-op tasks + a callback;
- chord of 10 000 no-op tasks + a callback. It can take minutes: by default it runs `--runs`
  times unless the first run takes more than 60 s, in which case that single run is the
  median; `--quick` runs it once.

Output: one JSON line per case on stdout (progress goes to stderr), first a line with the
versions of celery, kombu and redis-py.
"""

import argparse
import json
import statistics
import sys
import time

import celery
import kombu
import redis
from celery import Celery, chain, chord

app = Celery("celery_bench")
# Celery's defaults otherwise (JSON serializer, results expire after a day).
app.conf.broker_connection_retry_on_startup = True

SLOW_CASE_SECS = 60.0
RESULT_TIMEOUT_SECS = 1800


@app.task
def noop():
    return None


@app.task
def barrier(results):
    return {"n": len(results), "finished": time.time()}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def emit(record):
    print(json.dumps(record), flush=True)


def wait_for_worker(timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if app.control.ping(timeout=1.0):
            return
    sys.exit(f"no Celery worker answered a ping within {timeout:.0f} s")


def time_chord(n):
    """Seconds from submit to the callback's result received, and to the callback done."""
    start, start_wall = time.perf_counter(), time.time()
    result = chord(noop.si() for _ in range(n))(barrier.s())
    got = result.get(timeout=RESULT_TIMEOUT_SECS)
    secs = time.perf_counter() - start
    if got["n"] != n:
        sys.exit(f"chord of {n}: callback saw {got['n']} results")
    return secs, got["finished"] - start_wall


def time_chain(steps):
    start = time.perf_counter()
    result = chain(noop.si() for _ in range(steps)).apply_async()
    result.get(timeout=RESULT_TIMEOUT_SECS)
    return time.perf_counter() - start


def chord_case(n, runs, stop_if_slow):
    received, done = [], []
    for run in range(runs):
        secs, callback_done = time_chord(n)
        received.append(secs)
        done.append(callback_done)
        log(f"celery chord {n}: run {run + 1}/{runs}: {secs:.3f} s "
            f"(callback done after {callback_done:.3f} s)")
        if stop_if_slow and run == 0 and runs > 1 and secs > SLOW_CASE_SECS:
            log(f"celery chord {n}: over {SLOW_CASE_SECS:.0f} s, one run only")
            break
    return {"case": "chord", "n": n, "runs": len(received),
            "median_s": statistics.median(received), "samples_s": received,
            "median_callback_done_s": statistics.median(done), "samples_callback_done_s": done}


def chain_case(steps, runs):
    samples = [time_chain(steps) * 1000.0 / steps for _ in range(runs)]
    return {"case": "chain", "n": steps, "runs": runs,
            "median_ms_per_step": statistics.median(samples), "samples_ms_per_step": samples}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis", required=True, help="Redis URL for broker and results")
    parser.add_argument("--runs", type=int, default=5, help="runs per case (median)")
    parser.add_argument("--quick", action="store_true", help="run the 10 000-task chord once")
    parser.add_argument("--worker-timeout", type=float, default=60.0,
                        help="seconds to wait for the worker to answer a ping")
    args = parser.parse_args()
    app.conf.update(broker_url=args.redis, result_backend=args.redis)

    wait_for_worker(args.worker_timeout)
    # Warm-up: the worker's pool processes, connections and queue bindings, not measured.
    time_chord(10)
    time_chain(3)

    emit({"case": "versions", "celery": celery.__version__, "kombu": kombu.__version__,
          "redis_py": redis.__version__})
    # The chain first: in trials the first chain right after a 10 000-task chord took 50x its
    # usual time (Celery still digesting the chord), which would charge one case for another.
    emit(chain_case(40, args.runs))
    emit(chord_case(1_000, args.runs, stop_if_slow=False))
    emit(chord_case(10_000, 1 if args.quick else args.runs, stop_if_slow=True))


if __name__ == "__main__":
    main()
