"""Shared fixtures. Bot fixtures: the real Pipecat echo bot (voiceterm_devkit.echo_bot) on loopback.

`echo_bot` is one protobuf bot for the whole session (about 0.7 s to start), for tests that do not kill
it; `fresh_bot` is a bot of the test's own, for tests that kill and restart it; `twilio_bot` serves the
Twilio media-stream format. All need pipecat-ai installed (the `bot` extra) and are skipped without it.
"""

from __future__ import annotations

import importlib.util

import pytest

from voiceterm_devkit.bot import BotProcess


def _require_pipecat() -> None:
    if importlib.util.find_spec("pipecat") is None:
        pytest.skip("pipecat-ai is not installed (install the 'bot' extra)")


def _started(bot: BotProcess) -> BotProcess:
    bot.start()
    bot.wait_listening()
    return bot


@pytest.fixture(scope="session")
def echo_bot(tmp_path_factory: pytest.TempPathFactory):
    """One protobuf echo bot shared by the session. Tests must not kill it (use `fresh_bot`)."""
    _require_pipecat()
    bot = _started(BotProcess(log_dir=tmp_path_factory.mktemp("echo-bot")))
    yield bot
    bot.stop()


@pytest.fixture
def shared_bot(echo_bot: BotProcess) -> BotProcess:
    """The session's echo bot, restarted first should an earlier test have left it dead."""
    if not echo_bot.running:
        echo_bot.restart()
    return echo_bot


@pytest.fixture
def fresh_bot(tmp_path):
    """A protobuf echo bot of this test's own, free to kill and restart."""
    _require_pipecat()
    bot = _started(BotProcess(log_dir=tmp_path))
    yield bot
    bot.stop()


@pytest.fixture(scope="session")
def twilio_bot(tmp_path_factory: pytest.TempPathFactory):
    """An echo bot speaking the Twilio media-stream format (8 kHz mu-law JSON text frames)."""
    _require_pipecat()
    bot = _started(BotProcess(serializer="twilio", log_dir=tmp_path_factory.mktemp("twilio-bot")))
    yield bot
    bot.stop()
