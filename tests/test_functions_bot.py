"""Device functions, client requests and messages to the bot, against a real Pipecat bot.

Real parts: the echo bot in its `functions` mode (pipecat, RTVI on: it calls functions the way pipecat's LLM
services do — FunctionCallsStartedFrame and FunctionCallInProgressFrame, which pipecat's own RTVI observer
sends as llm-function-call-in-progress — and logs the FunctionCallResultFrame pipecat's RTVI processor makes
of the device's llm-function-call-result), the whole Daemon with its Link and ALSA file PCMs, commands run as
real subprocesses, and integrations as plain clients of the event socket.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import pytest
import trio

from voiceterm.config import Config
from voiceterm.config_load import config_from_dict
from voiceterm_devkit.alsa_files import AlsaFileConfig
from voiceterm_devkit.bot import BotProcess, event_is
from voiceterm_devkit.eventsock import Client, running, wait_until

pytestmark = [pytest.mark.bot, pytest.mark.alsa]

SENSOR = """\
import json, sys
args = json.load(sys.stdin)
print(json.dumps({"celsius": 21.5, "room": args.get("room")}))
"""
HANG = """\
import os, sys, time
open(sys.argv[1], "w").write(str(os.getpid()))
time.sleep(60)
"""
FAIL = """\
import sys
sys.stderr.write("sensor bus\\nnot found\\n")
sys.exit(3)
"""


@pytest.fixture(scope="module")
def functions_bot(tmp_path_factory: pytest.TempPathFactory):
    pytest.importorskip("pipecat", reason="pipecat-ai is not installed (install the 'bot' extra)")
    with BotProcess(log_dir=tmp_path_factory.mktemp("functions-bot"), mode="functions") as bot:
        yield bot


def make_config(tmp_path: Path, bot: BotProcess, monkeypatch: pytest.MonkeyPatch) -> Config:
    pytest.importorskip("alsaaudio")
    alsa = AlsaFileConfig(tmp_path / "alsa")
    mic = tmp_path / "mic.raw"
    mic.write_bytes(bytes(16000 * 2 * 30))
    alsa.add_capture("mic", mic).add_playback("spk", tmp_path / "spk.raw")
    monkeypatch.setenv("ALSA_CONFIG_PATH", str(alsa.write()))
    scripts = {}
    for name, text in (("sensor", SENSOR), ("hang", HANG), ("fail", FAIL)):
        scripts[name] = tmp_path / f"{name}.py"
        scripts[name].write_text(text)
    return config_from_dict(
        {
            "bot": {
                "url": bot.url,
                "connect_timeout": 2.0,
                "ready_timeout": 2.0,
                "device_id": "functions-test",
            },
            "audio": {"capture_device": "mic", "playback_device": "spk", "pacing": "wall-clock"},
            "earcons": {"enabled": False},
            "gpio": {"enabled": False},
            "reconnect": {"initial_delay": 0.1, "max_delay": 0.5},
            "status": {"socket": str(tmp_path / "status.sock")},
            "events": {"socket": str(tmp_path / "events.sock")},
            "functions": {
                "builtin_set_volume": True,
                "builtin_end_session": True,
                "claim_timeout_s": 0.5,
                "commands": {
                    "read_sensor": {"command": [sys.executable, str(scripts["sensor"])]},
                    "hang": {
                        "command": [sys.executable, str(scripts["hang"]), str(tmp_path / "hang.pid")],
                        "timeout_s": 0.5,
                    },
                    "failing_sensor": {"command": [sys.executable, str(scripts["fail"])]},
                    "wait_for_door": {
                        "command": [sys.executable, str(scripts["hang"]), str(tmp_path / "wait.pid")],
                        "timeout_s": 30,
                    },
                },
            },
        }
    )


async def bot_calls(bot: BotProcess, client: Client, name: str, arguments: dict, how: str = "call") -> dict:
    """Make the bot call `name` (via a client-message, sent with the control socket's own command) and
    return the result it received (its `function_result` event)."""
    mark = bot.mark()
    reply = await client.request("client-message", t=how, d={"function_name": name, "arguments": arguments})
    assert reply["ok"], reply
    called = await bot.wait_for_async(event_is("function_call", function_name=name), 5, since=mark)
    return await bot.wait_for_async(
        event_is("function_result", tool_call_id=called["tool_call_id"]), 10, since=mark
    )


async def test_a_function_declared_in_the_configuration_is_called_by_the_bot_and_its_result_reaches_it(
    functions_bot: BotProcess, tmp_path: Path, monkeypatch
) -> None:
    cfg = make_config(tmp_path, functions_bot, monkeypatch)
    with trio.fail_after(40):
        async with running(cfg) as daemon, Client.open(cfg.events.socket) as sub:
            await sub.request("subscribe", events=["function-call", "function-call-result"])
            got = await bot_calls(functions_bot, sub, "read_sensor", {"room": "hall"})
            assert got["result"] == {"celsius": 21.5, "room": "hall"}
            assert got["arguments"] == {"room": "hall"}
            # the deprecated llm-function-call message works the same way
            got = await bot_calls(functions_bot, sub, "read_sensor", {"room": "loft"}, how="call_legacy")
            assert got["result"] == {"celsius": 21.5, "room": "loft"}
            await wait_until(lambda: len(sub.events("function-call-result")) == 2, 5)
            snapshot = daemon.snapshot()["integrations"]["functions"]
    calls = sub.events("function-call")
    assert [(c["function_name"], c["handler"], c["arguments"]) for c in calls] == [
        ("read_sensor", "command", {"room": "hall"}),
        ("read_sensor", "command", {"room": "loft"}),
    ]
    assert all(r["ok"] for r in sub.events("function-call-result"))
    assert snapshot["function_results_ok_total"] == 2 and snapshot["function_calls_repeated_total"] == 0


async def test_failing_and_hanging_commands_give_the_bot_an_error_result(
    functions_bot: BotProcess, tmp_path: Path, monkeypatch, caplog
) -> None:
    cfg = make_config(tmp_path, functions_bot, monkeypatch)
    caplog.set_level(logging.INFO, logger="voiceterm.functions")
    with trio.fail_after(40):
        async with running(cfg), Client.open(cfg.events.socket) as client:
            got = await bot_calls(functions_bot, client, "failing_sensor", {})
            assert got["result"] == {"error": "the command exited with status 3"}
            got = await bot_calls(functions_bot, client, "hang", {})
            assert got["result"] == {"error": "hang gave no answer within 0.5 s"}
            pid = int((tmp_path / "hang.pid").read_text())
            await wait_until(lambda: not _alive(pid), 5, "the hanging command to be killed")
    # its stderr is in the journal: escaped, one line
    stderr_lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("function stderr")]
    assert stderr_lines == ['function stderr name=failing_sensor status=3 text="sensor bus\\nnot found\\n"']


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


async def test_a_control_socket_client_answers_the_calls_it_claimed(
    functions_bot: BotProcess, tmp_path: Path, monkeypatch
) -> None:
    cfg = make_config(tmp_path, functions_bot, monkeypatch)
    with trio.fail_after(40):
        async with (
            running(cfg),
            Client.open(cfg.events.socket) as bridge,
            Client.open(cfg.events.socket) as other,
        ):
            assert (await bridge.request("function-claim", names=["open_door"]))["result"] == {
                "claimed": ["open_door"]
            }
            refused = await other.request("function-claim", names=["open_door"])
            assert refused["error"] == "open_door is already claimed by another client"

            async def answer_the_bridge_call() -> None:
                request = await wait_until(
                    lambda: next(iter(bridge.events("function-call-request")), None), 5
                )
                assert request["arguments"] == {"door": "front"} and request["timeout_s"] == 0.5
                wrong = await other.request(
                    "function-result", tool_call_id=request["tool_call_id"], result={}
                )
                assert wrong["error"].endswith("is not this client's to answer")
                reply = await bridge.request(
                    "function-result", tool_call_id=request["tool_call_id"], result={"opened": True}
                )
                assert reply["ok"], reply

            async with trio.open_nursery() as nursery:
                nursery.start_soon(answer_the_bridge_call)
                got = await bot_calls(functions_bot, other, "open_door", {"door": "front"})
            assert got["result"] == {"opened": True}
            assert not other.events("function-call-request")  # only the claimer is asked


async def test_an_unanswered_call_gets_an_error_result_within_its_timeout(
    functions_bot: BotProcess, tmp_path: Path, monkeypatch
) -> None:
    cfg = make_config(tmp_path, functions_bot, monkeypatch)
    with trio.fail_after(40):
        async with running(cfg) as daemon, Client.open(cfg.events.socket) as commander:
            async with Client.open(cfg.events.socket) as sleepy:
                await sleepy.request("function-claim", names=["open_door"])
                got = await bot_calls(functions_bot, commander, "open_door", {})  # sleepy never answers
                assert got["result"] == {"error": "open_door gave no answer within 0.5 s"}
                assert [e["reason"] for e in sleepy.events("function-call-dropped")] == [
                    "open_door gave no answer within 0.5 s"
                ]
            # The claimer went away: the bot still gets an answer, at once, rather than waiting for nobody.
            await wait_until(lambda: not daemon.integrations.functions.table.claims, 5, "the claim to end")
            got = await bot_calls(functions_bot, commander, "open_door", {})
            assert got["result"] == {"error": "no integration answers open_door now"}


async def test_a_builtin_the_configuration_exposes_acts_on_the_device(
    functions_bot: BotProcess, tmp_path: Path, monkeypatch
) -> None:
    cfg = make_config(tmp_path, functions_bot, monkeypatch)
    with trio.fail_after(40):
        async with running(cfg) as daemon, Client.open(cfg.events.socket) as client:
            got = await bot_calls(functions_bot, client, "set_volume", {"percent": 35})
            assert got["result"] == {"volume_percent": 35}
            assert round(daemon.speaker.volume * 100) == 35
            got = await bot_calls(functions_bot, client, "set_volume", {"percent": "loud"})
            assert got["result"] == {"error": "set_volume needs percent, a number from 0 to 400"}
            # mute is not exposed by this configuration: the call is the bot's own business, and answering it
            # would inject a bogus result, so the device leaves it alone
            table = daemon.integrations.functions.table
            ignored = table.counters["function_calls_ignored_total"]
            reply = await client.request(
                "client-message", t="call", d={"function_name": "mute", "arguments": {}}
            )
            assert reply["ok"]
            await wait_until(lambda: table.counters["function_calls_ignored_total"] > ignored, 5)
            assert table.counters["function_calls_total"] == 2


async def test_a_request_gets_its_reply_by_id_and_messages_reach_the_bot(
    functions_bot: BotProcess, tmp_path: Path, monkeypatch
) -> None:
    cfg = make_config(tmp_path, functions_bot, monkeypatch)
    with trio.fail_after(40):
        async with running(cfg), Client.open(cfg.events.socket) as client:
            replies = [await client.request("request", t="ping", d={"n": n}, timeout_s=5) for n in (1, 2)]
            refused = await client.request("request", t="refuse", d=None, timeout_s=5)
            ignored = await client.request("request", t="ignore", d=None, timeout_s=0.3)
            ids = [r["result"]["id"] for r in (*replies, refused, ignored)]
            await wait_until(lambda: len(client.events("client-response")) == 4, 10, "all four outcomes")
            outcomes = {e["request_id"]: e for e in client.events("client-response")}

            mark = functions_bot.mark()
            assert (await client.request("dtmf", buttons="12#"))["result"] == {
                "buttons": "12#",
                "messages": 1,
            }
            assert (await client.request("ui-event", event="door-opened", payload={"who": "me"}))["ok"]
            keys = [await functions_bot.wait_for_async(event_is("dtmf"), 5, since=mark)]
            for _ in range(2):
                keys.append(
                    await functions_bot.wait_for_async(
                        event_is("dtmf"), 5, since=functions_bot.events().index(keys[-1]) + 1
                    )
                )
            ui = await functions_bot.wait_for_async(event_is("ui_event"), 5, since=mark)

    assert [(outcomes[i]["ok"], outcomes[i]["d"]) for i in ids[:2]] == [
        (True, {"pong": {"n": 1}}),
        (True, {"pong": {"n": 2}}),
    ]
    assert outcomes[ids[2]]["error"] == "the bot refused the request: refused on purpose"
    assert outcomes[ids[3]]["error"] == "no reply within 0.3 s"
    requests = functions_bot.events("request")
    assert [r["id"] for r in requests[-3:]] == ids[:3]  # the bot saw the very ids the replies carried
    assert [k["key"] for k in keys] == ["1", "2", "#"]
    assert (ui["name"], ui["payload"]) == ("door-opened", {"who": "me"})


async def test_voiceterm_ctl_request_prints_the_bots_reply(
    functions_bot: BotProcess, tmp_path: Path, monkeypatch
) -> None:
    cfg = make_config(tmp_path, functions_bot, monkeypatch)
    ctl = [sys.executable, "-m", "voiceterm", "ctl", "--socket", cfg.events.socket]
    with trio.fail_after(40):
        async with running(cfg):
            done = await trio.run_process(
                [*ctl, "--json", "request", "ping", '{"n": 7}'], capture_stdout=True
            )
            refused = await trio.run_process([*ctl, "request", "refuse"], capture_stderr=True, check=False)
            functions = await trio.run_process([*ctl, "--json", "functions"], capture_stdout=True)
    reply = json.loads(done.stdout)
    assert reply["ok"] and reply["result"]["d"] == {"pong": {"n": 7}}
    assert refused.returncode == 1
    assert (
        refused.stderr.decode().strip()
        == "voiceterm: request: the bot refused the request: refused on purpose"
    )
    assert json.loads(functions.stdout)["result"]["commands"] == [
        "failing_sensor",
        "hang",
        "read_sensor",
        "wait_for_door",
    ]


async def test_a_call_the_bot_cancels_is_stopped_and_end_session_ends_the_session_after_its_answer(
    functions_bot: BotProcess, tmp_path: Path, monkeypatch
) -> None:
    cfg = make_config(tmp_path, functions_bot, monkeypatch)
    with trio.fail_after(40):
        async with running(cfg) as daemon, Client.open(cfg.events.socket) as sub:
            await sub.request(
                "subscribe", events=["function-call-dropped", "function-call-result", "connected"]
            )
            mark = functions_bot.mark()
            call = {"function_name": "wait_for_door", "tool_call_id": "call_door_1"}
            await sub.request("client-message", t="call", d=call)
            pid_file = tmp_path / "wait.pid"
            await wait_until(lambda: pid_file.exists() and pid_file.read_text(), 5, "the command to run")
            pid = int(pid_file.read_text())
            await sub.request("client-message", t="cancel_call", d=call)
            dropped = await wait_until(lambda: next(iter(sub.events("function-call-dropped")), None), 5)
            assert dropped["reason"] == "cancelled by the bot"
            await wait_until(lambda: not _alive(pid), 5, "the cancelled command to be killed")

            session = daemon.link.snapshot()["session"]
            got = await bot_calls(functions_bot, sub, "end_session", {})
            assert got["result"] == {"ending": True}
            await functions_bot.wait_for_async(event_is("disconnect_bot"), 5, since=mark)
            await wait_until(lambda: daemon.link.snapshot()["session"] > session, 10, "a fresh session")
    assert not [
        e for e in functions_bot.events("function_result", gen=None) if e["tool_call_id"] == "call_door_1"
    ]
    assert [r["function_name"] for r in sub.events("function-call-result")] == ["end_session"]
