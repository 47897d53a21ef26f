"""The benchmark's own code: /proc parsing, the thread-name shim, strace's epoll lines, the targets, the report
over synthetic windows, and the floor client against the real echo bot on file PCMs. No figure is asserted:
figures belong to `scripts/bench`."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from voiceterm_devkit.bench import summarize
from voiceterm_devkit.bench_checks import checks, tier_checks
from voiceterm_devkit.bench_clients import ClientProcess
from voiceterm_devkit.bench_daemon import parse_epoll_trace
from voiceterm_devkit.bench_proc import (
    ProcessReading,
    ThreadNamer,
    ThreadReading,
    parse_schedstat_ns,
    parse_stat_cpu_ticks,
    parse_status,
    parse_thread_map,
    read_process,
    thread_figures,
)
from voiceterm_devkit.bench_report import print_report
from voiceterm_devkit.bench_tiers import FileTier
from voiceterm_devkit.bench_window import Window, role
from voiceterm_devkit.bot import BotProcess
from voiceterm_devkit.thread_names import with_thread_names

# A real /proc/PID/task/TID/stat line whose command holds spaces and parentheses.
STAT = (
    "4242 (odd) name (x)) S 1 4242 4242 0 -1 4194560 1800 0 0 0 123 45 6 7 20 0 5 0 9876 123456789 "
    "12000 18446744073709551615 1 1 0 0 0 0 0 16781312 134234626 0 0 0 17 1 0 0 0 0 0"
)


def test_proc_lines_parse() -> None:
    assert parse_stat_cpu_ticks(STAT) == 123 + 45
    assert parse_stat_cpu_ticks(STAT, children=True) == 123 + 45 + 6 + 7
    assert parse_schedstat_ns("169132109 12310637 447\n") == 169132109
    status = "Name:\tvoiceterm\nVmRSS:\t   51200 kB\nvoluntary_ctxt_switches:\t61\nnonvoluntary_ctxt_switches:\t3\n"
    assert parse_status(status, ("VmRSS", "voluntary_ctxt_switches")) == {
        "VmRSS": 51200,
        "voluntary_ctxt_switches": 61,
    }
    # A reused TID takes the later name; junk lines are skipped.
    assert parse_thread_map("12\tvoiceterm-capture\nbad line\n13\tx\n12\tTrio thread 0\n") == {
        12: "Trio thread 0",
        13: "x",
    }


def _reading(tid: int, comm: str, cpu_ms: int, vol: int, inv: int = 0) -> ThreadReading:
    return ThreadReading(tid, comm, cpu_ms * 1_000_000, cpu_ms // 10, vol, inv, True)


def test_a_window_of_two_readings_gives_each_thread_its_share_and_wakeups(tmp_path: Path) -> None:
    start = ProcessReading(
        100, 10.0, 1.0, {100: _reading(100, "voiceterm", 50, 10), 101: _reading(101, "voiceterm", 5, 1)}
    )
    end = ProcessReading(
        100,
        20.0,
        1.3,
        {
            100: _reading(100, "voiceterm", 250, 610, 7),  # 200 ms in 10 s, 600 wake-ups
            101: _reading(101, "voiceterm", 55, 501),
            102: _reading(102, "threaded-ml", 30, 2000),  # born inside the window: counted from zero
        },
    )
    names = tmp_path / "threads.tsv"
    names.write_text("101\tvoiceterm-capture\n")
    figures = {f.name: f for f in thread_figures(start, end, ThreadNamer(100, names))}
    assert figures["main"].core_percent == 2.0
    assert figures["main"].wakeups_per_s == 60.0
    assert figures["main"].preempted_per_s == 0.7
    assert figures["voiceterm-capture"].core_percent == 0.5
    assert figures["threaded-ml"].wakeups_per_s == 200.0  # an OS name the program set wins over the map
    assert [role(f) for f in thread_figures(start, end, ThreadNamer(100, names))] == [
        "event loop",
        "capture",
        "pulse plugin",
    ]


def test_the_shim_names_a_child_pythons_threads(tmp_path: Path) -> None:
    env = with_thread_names({"PATH": "/usr/bin:/bin"}, tmp_path / "map.tsv", tmp_path / "shim")
    code = (
        "import threading, sys\n"
        "done = threading.Event()\n"
        "t = threading.Thread(target=done.wait, name='bench-probe', daemon=True)\n"
        "t.start()\n"
        "print(t.native_id, flush=True)\n"
        "sys.stdin.read()\n"
        "done.set()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        tid = int(child.stdout.readline())
        reading = read_process(child.pid)
        namer = ThreadNamer(child.pid, tmp_path / "map.tsv")
        comm = reading.threads[child.pid].comm
        assert namer.name(reading.threads[tid], comm) == "bench-probe"
        assert namer.name(reading.threads[child.pid], comm) == "main"
    finally:
        child.communicate("", timeout=10)


def test_strace_lines_count_calls_and_blocking_calls() -> None:
    text = (
        "epoll_wait(3, [{events=EPOLLIN, data={u32=6, u64=6}}, {events=EPOLLOUT, data={u32=7, u64=7}}], 3, 19) = 2\n"
        "epoll_wait(3, [], 3, 0)                 = 0\n"
        "epoll_pwait(4, [], 1023, -1, NULL, 8)   = 1\n"
        "epoll_pwait(4, [], 1023, 0, NULL, 8)    = 0\n"
        "epoll_wait(3,  <detached ...>\n"
    )
    assert parse_epoll_trace(text) == {"calls": 4, "blocking": 2}


def _window(cpu_percent: float, main_wakeups: float, rss_mib: float = 40.0) -> Window:
    from voiceterm_devkit.bench_proc import ThreadFigures

    threads = [
        ThreadFigures("main", 1, cpu_percent * 0.7, main_wakeups, 1.0, True),
        ThreadFigures("x-capture", 2, cpu_percent * 0.3, 50.0, 0.0, True),
    ]
    return Window(
        cpu_s=cpu_percent / 100 * 10,
        cpu_ticks_s=cpu_percent / 100 * 10,
        wall_s=10.0,
        rss_steady_kib=rss_mib * 1024,
        rss_peak_kib=int(rss_mib * 1024),
        up_realtime=1.0,
        down_realtime=1.0,
        threads=threads,
        load=(1.0, 1.0, 1.0),
        extra={"resampled_chunks_total": 0, "frontend_cpu_s": 0.1},
    )


def test_targets_and_report_from_synthetic_windows(capsys) -> None:
    windows = {
        "voiceterm": [_window(3.0, 60.0), _window(2.5, 62.0)],
        "floor": [_window(2.0, 70.0), _window(2.4, 70.0)],
        "pipecat": [_window(5.0, 120.0), _window(4.5, 118.0)],
        "voiceterm_frontend": [_window(6.0, 80.0)],
        "voiceterm_chunk40": [_window(2.2, 35.0), _window(2.4, 36.0)],
    }
    windows["voiceterm_chunk40"][0].extra["capture_to_send"] = {"p50_ms": 0.5, "p99_ms": 0.9}
    windows["voiceterm_chunk40"][1].extra["capture_to_send"] = {"p50_ms": 0.5, "p99_ms": 1.3}
    summary = summarize(windows, idle=[_window(0.2, 2.0), _window(0.25, 3.0)])
    assert summary["voiceterm_over_floor"]["best"] == 1.25  # 2.5 / 2.0: the best rounds
    larger = summary["chunk40_cost"]
    assert larger["over_20_ms_best"] == 0.88  # 2.2 / 2.5
    assert larger["main_wakeups_per_s"]["all"] == [35.0, 36.0]
    assert larger["main_wakeups_per_s_20_ms"]["all"] == [60.0, 62.0]
    assert larger["capture_to_send_p99_ms"]["all"] == [0.9, 1.3]
    assert larger["oldest_sample_older_ms"] == 20
    assert summary["voiceterm_over_floor"]["rounds"]["all"] == [1.5, 1.042]  # paired in time
    tier = {
        "label": "synthetic",
        "rounds": {k: [w.as_dict() for w in ws] for k, ws in windows.items()},
        "summary": summary,
        "latency": {"capture_to_send": {"p50_ms": 0.5, "p99_ms": 2.5, "max_ms": 3.0, "samples_total": 10}},
    }
    by_name = {c["target"]: c for c in tier_checks("files", tier)}
    ratio = by_name["[files] full duplex CPU <= 1.15 x the floor (best rounds)"]
    assert not ratio["met"] and "over by 0.1 x" in ratio["gap"]
    assert by_name["[files] idle in hold mode: trio wake-ups <= 5/s"]["met"]
    assert by_name["[files] capture_to_send p99 <= 2 ms"]["gap"].startswith("over by 0.5 ms")
    assert by_name["[files] receive_to_playout p99 <= 2 ms"]["gap"] == "not measured"
    # Side by side, the median of the same-window ratios is what the target is checked on.
    windows["paired_voiceterm"] = [_window(3.0, 60.0), _window(2.2, 60.0), _window(2.4, 60.0)]
    windows["paired_floor"] = [_window(2.0, 70.0), _window(2.0, 70.0), _window(2.0, 70.0)]
    tier["summary"] = summarize(windows, idle=[])
    assert tier["summary"]["voiceterm_over_floor_paired"]["p50"] == 1.2
    side = {c["target"]: c for c in tier_checks("files", tier)}
    assert (
        side["[files] full duplex CPU <= 1.15 x the floor (side by side, median of rounds)"]["value"] == 1.2
    )
    tier["summary"] = summary
    results = {
        "machine": {"voiceterm": "0", "pipecat_ai": "1", "cores": 2, "cpu_model": "test", "python": "3"},
        "settings": {"seconds": 10.0, "idle": 10.0, "rounds": 2},
        "tiers": {"files": tier, "room": {"skipped": "no pulseaudio"}},
        "startup_s": {"n": 1, "min": 0.25, "p50": 0.25, "max": 0.25},
    }
    results["checks"] = checks(results)
    print_report(results, "results.json", None)
    out = capsys.readouterr().out
    assert "room tier skipped: no pulseaudio" in out
    assert "audio.chunk_ms = 40 (full duplex): 2.20-2.40 % of a core, 0.88 x the 20 ms chunks'" in out
    assert "capture -> send p99 0.90-1.30 ms (20 ms chunks: 2.50)" in out
    assert "start -> READY=1 p50 <= 300 ms" in out and "MISSED" in out


def test_the_floor_client_streams_both_ways_on_file_devices(tmp_path: Path, shared_bot: BotProcess) -> None:
    tier = FileTier(tmp_path, mic_seconds=30)
    mark = shared_bot.mark()
    client = ClientProcess(
        "floor",
        url=shared_bot.url,
        devices=tier.devices(tmp_path / "floor"),
        pacing="wall-clock",
        run_dir=tmp_path / "floor",
        seconds=30,
    )
    try:
        client.wait_event("connected", 20)
        client.wait_event("first_audio", 20)
        deadline = time.monotonic() + 20
        while True:
            stats = client.stats()
            if stats["sent_chunks"] >= 25 and stats["played_audio_bytes"] > 0:
                break
            assert time.monotonic() < deadline, f"the floor did not stream both ways: {stats}"
            time.sleep(0.2)
        shared_bot.wait_for(lambda e: e["event"] == "audio_in" and e.get("rate") == 16000, 10, since=mark)
        reading = read_process(client.pid)
        namer = ThreadNamer(client.pid, client.map_file)
        comm = reading.threads[client.pid].comm
        names = {namer.name(t, comm) for t in reading.threads.values()}
        assert {"main", "floor-capture", "floor-playback"} <= names
    finally:
        client.stop()
    assert stats["mic_dropped"] == 0 and stats["other_rate_chunks"] == 0
    assert stats["received_audio_bytes"] > 0
    assert (tmp_path / "floor" / "spk.raw").stat().st_size > 0  # what the playback thread wrote
