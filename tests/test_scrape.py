"""The metrics endpoint (agent.scrape) with real job processes, and its start-up errors.

The multiprocess test runs a small "worker" in a subprocess of its own, as
livekit-agents runs one: the endpoint is started in the main process, then
job processes come from a forkserver that preloads our modules (what
``AgentServer`` does on Linux). Each job counts a session; one is killed
with SIGKILL mid-session, as a crash would be.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agent.testing.harness import free_port

ROOT = Path(__file__).resolve().parents[1]

WORKER_SCRIPT = textwrap.dedent(
    """
    import json, multiprocessing as mp, os, signal, sys, urllib.request
    from types import SimpleNamespace

    def job(n, hold):
        from agent.cost import Usage, parse_prices
        from agent.metrics import SessionMeter
        meter = SessionMeter(model="gpt-realtime", prices=parse_prices(None), silence_s=0.5, tool_names=frozenset({"place_order"}))
        meter.attach(SimpleNamespace(on=lambda *a: None))
        meter.on_usage(Usage(audio_in=600 * n, audio_out=1200, text_in=10))
        meter.on_tool_call("place_order", f"c{n}", is_error=False)
        meter.on_agent_state("speaking", 1.0)
        if hold is not None:
            hold.set()
            signal.pause()  # a session still running when the process is killed
        meter.close()

    def scrape(port):
        from prometheus_client.parser import text_string_to_metric_families
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        out, names = {}, []
        for family in text_string_to_metric_families(text):
            names.append(family.name)
            for s in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
                out[s.name + ("{" + labels + "}" if labels else "")] = s.value
        return out, names

    if __name__ == "__main__":
        from agent.config import Settings
        from agent import scrape as endpoint
        import livekit.agents  # the worker has imported the framework (and prometheus-client) by now
        endpoint.start(Settings(metrics_port=int(sys.argv[1]), metrics_host="127.0.0.1"))
        from livekit.agents import utils
        from agent.metrics import JOBS_ACCEPTED, count_job_ends

        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["agent.metrics"])
        pool = utils.EventEmitter()
        count_job_ends(pool, draining=lambda: False)
        for n in (1, 2):
            p = ctx.Process(target=job, args=(n, None)); p.start(); p.join()
            JOBS_ACCEPTED.inc()
            pool.emit("process_closed", SimpleNamespace(pid=p.pid, running_job=object(), exitcode=p.exitcode, killed=False))
        hold = ctx.Event()
        p = ctx.Process(target=job, args=(3, hold)); p.start(); hold.wait(30)
        JOBS_ACCEPTED.inc()
        during, names = scrape(sys.argv[1])
        os.kill(p.pid, signal.SIGKILL); p.join()
        pool.emit("process_closed", SimpleNamespace(pid=p.pid, running_job=object(), exitcode=p.exitcode, killed=False))
        after, _ = scrape(sys.argv[1])
        print(json.dumps({"during": during, "after": after, "names": names, "dir": os.environ["PROMETHEUS_MULTIPROC_DIR"]}))
    """
)


def test_a_scrape_sums_the_job_processes_and_drops_a_dead_ones_live_gauge(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, str(script), str(free_port())], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    during, after = result["during"], result["after"]
    # one session still running (job 3), two ended
    assert during["agent_sessions_active"] == 1
    assert after["agent_sessions_active"] == 0, "the killed process's live gauge was not dropped"
    # counters of every job process, the killed one included, stay in the sums
    assert after["agent_audio_input_tokens_total"] == 600 * (1 + 2 + 3)
    assert after["agent_audio_output_tokens_total"] == 3 * 1200
    assert after['agent_tool_calls_total{outcome="ok",tool="place_order"}'] == 3
    # 6 min in at $0.06 + 3 min out at $0.24
    assert after['agent_cost_usd_total{model="gpt-realtime"}'] == pytest.approx(6 * 0.06 + 3 * 0.24)
    # the worker's own families, counted in memory in the main process, once
    assert after["agent_jobs_accepted_total"] == 3
    assert after["agent_jobs_failed_total"] == 1  # the SIGKILL
    assert len(result["names"]) == len(set(result["names"])), f"a family appears twice: {result['names']}"


LIVEKIT_WORKER_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, os, signal, sys, time

    async def until(found, timeout):
        deadline = time.monotonic() + timeout
        while (value := found()) is None and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        return value

    async def main(settings, directory):
        from agent.internals import process_pool
        from agent.worker import build_server

        server = build_server(settings)
        run = asyncio.create_task(server.run(unregistered=True))  # no livekit-server: the pool alone
        def warm_pid():
            pool = process_pool(server)
            for proc in pool.processes if pool else []:
                if proc.pid and f"gauge_livesum_{proc.pid}.db" in os.listdir(directory):
                    return proc.pid
        pid = await until(warm_pid, 90)
        files_warm = sorted(os.listdir(directory))
        os.kill(pid, signal.SIGKILL)
        gone = await until(lambda: True if f"gauge_livesum_{pid}.db" not in os.listdir(directory) else None, 30)
        print(json.dumps({"pid": pid, "worker_pid": os.getpid(), "files_warm": files_warm, "gone": bool(gone)}), flush=True)
        await server.aclose()
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)

    if __name__ == "__main__":  # the forkserver imports this file again
        from agent import scrape
        from agent.config import Settings

        settings = Settings(metrics_port=int(sys.argv[1]), metrics_host="127.0.0.1", http_port=int(sys.argv[2]),
                            num_idle_processes=1, livekit_api_key="APIkey", livekit_api_secret="s" * 40)
        scrape.start(settings)
        asyncio.run(main(settings, os.environ["PROMETHEUS_MULTIPROC_DIR"]))
    """
)


def test_livekit_agents_job_processes_count_into_the_workers_directory(tmp_path: Path) -> None:
    # The real process pool of livekit-agents (run unregistered: no server needed):
    # its warm job process imports our modules with the worker's directory set, so
    # it writes there under its own pid, and the pool's end of it marks it dead.
    script = tmp_path / "worker.py"
    script.write_text(LIVEKIT_WORKER_SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROMETHEUS_", "AGENT_", "LIVEKIT_"))}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, str(script), str(free_port()), str(free_port())], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("{")))
    assert result["pid"] and result["pid"] != result["worker_pid"]
    assert f"counter_{result['pid']}.db" in result["files_warm"], result["files_warm"]
    assert not any(str(result["worker_pid"]) in name for name in result["files_warm"]), "the main process wrote files"
    assert result["gone"], "the killed job process's live gauge file stayed"


def _run_agent(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("LIVEKIT_", "AGENT_", "OPENAI_", "PROMETHEUS_"))}
    full_env.update(env, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "agent", *args], env=full_env, cwd=ROOT, capture_output=True, text=True, timeout=60)


def _one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, done.stderr
    return lines[0]


WORKER_ENV = {
    # nothing listens there: were the worker to get past the metrics port, its preflight would say so
    "LIVEKIT_URL": f"ws://127.0.0.1:{free_port()}",
    "LIVEKIT_API_KEY": "APIkey",
    "LIVEKIT_API_SECRET": "s" * 40,
    "AGENT_PREFLIGHT_TIMEOUT": "1",
    "AGENT_METRICS_HOST": "127.0.0.1",
}


def test_a_metrics_port_already_taken_is_one_error_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _run_agent("start", env={**WORKER_ENV, "AGENT_METRICS_PORT": str(port), "TMPDIR": str(tmp_path)})
    line = _one_error_line(done)
    assert f"AGENT_METRICS_PORT={port}" in line and "cannot listen on" in line
    assert done.returncode == 2  # a setting, not a peer: the preflight never ran
    assert "livekit-server" not in done.stderr
    assert list(tmp_path.iterdir()) == [], "a metrics directory was left behind"


def test_an_inherited_multiprocess_dir_is_left_alone(tmp_path: Path) -> None:
    # prometheus-client is not imported yet when the endpoint starts, so the worker drops
    # the inherited setting, counts in memory and gives its job processes a fresh directory.
    inherited = tmp_path / "inherited"
    inherited.mkdir()
    env = {**WORKER_ENV, "AGENT_METRICS_PORT": str(free_port()), "PROMETHEUS_MULTIPROC_DIR": str(inherited)}
    done = _run_agent("start", env=env)
    assert "cannot reach livekit-server" in _one_error_line(done)  # past the metrics set-up, to the preflight
    assert list(inherited.iterdir()) == []


def test_a_malformed_price_table_is_one_error_at_start_up() -> None:
    done = _run_agent("start", env={**WORKER_ENV, "AGENT_PRICES": '{"*": {"per_minute": {"audio_in": 0.06}}}'})
    line = _one_error_line(done)
    assert "AGENT_PRICES['*'].per_minute: missing audio_out" in line
    assert "livekit-server" not in done.stderr
