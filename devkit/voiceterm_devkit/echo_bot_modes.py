"""More modes of the echo bot (`voiceterm_devkit.echo_bot`), for the bot-side parity tests, and the pipecat
runner's reading of a Twilio call.

- ``functions``: an LLM-free bot that calls functions the way pipecat's LLM services do. The client-message
  ``{"t": "call", "d": {"function_name", "arguments", "tool_call_id"?}}`` pushes FunctionCallsStartedFrame and
  FunctionCallInProgressFrame, which pipecat's RTVI observer sends as ``llm-function-call-started`` and
  ``llm-function-call-in-progress``; ``call_legacy`` sends the deprecated ``llm-function-call`` message
  instead; ``cancel_call`` pushes FunctionCallCancelFrame. The client's ``llm-function-call-result`` comes
  back through pipecat's RTVI processor as a FunctionCallResultFrame. Events: function_call, function_result,
  function_cancel.
- ``no-interrupt``: Silero VAD and pipecat's user-turn processor with a VAD turn start that does not
  interrupt the bot: the user is heard (``user-started-speaking``) while the bot talks on. Events:
  user_turn (started / stopped).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any


class _Replay:
    """The part of a FastAPI WebSocket that pipecat's parse_telephony_websocket reads: `iter_text()`."""

    def __init__(self, messages: list[str]) -> None:
        self._messages = messages

    async def iter_text(self):
        for message in self._messages:
            yield message


async def runner_call_data(opening: list[str]) -> tuple[str, dict[str, Any]]:
    """What pipecat's runner makes of a call's first messages (``connected``, ``start``): the transport it
    detects and the ``call_data`` a runner bot receives, by its wire keys (``stream_id``, ``call_id``, ``from``,
    ``body``...)."""
    from pipecat.runner.utils import parse_telephony_websocket

    transport, call_data = await parse_telephony_websocket(_Replay(opening))
    data = call_data.model_dump(by_alias=True) if hasattr(call_data, "model_dump") else dict(call_data)
    return transport, json.loads(json.dumps(data, default=str))


def _functions_mode(base: type) -> type:
    from pipecat.frames.frames import (
        FunctionCallCancelFrame,
        FunctionCallFromLLM,
        FunctionCallInProgressFrame,
        FunctionCallResultFrame,
        FunctionCallsStartedFrame,
        OutputTransportMessageUrgentFrame,
    )

    class FunctionsBrain(base):
        """Calls functions on request and logs the results the client sends back."""

        async def process_frame(self, frame, direction) -> None:
            if isinstance(frame, FunctionCallResultFrame):
                self.log.emit(
                    "function_result",
                    tool_call_id=frame.tool_call_id,
                    function_name=frame.function_name,
                    arguments=frame.arguments,
                    result=frame.result,
                )
            await super().process_frame(frame, direction)

        async def on_client_message(self, kind: str, data: Any) -> None:
            await super().on_client_message(kind, data)
            if not isinstance(data, dict) or kind not in ("call", "call_legacy", "cancel_call"):
                return
            name = str(data.get("function_name", ""))
            call_id = str(data.get("tool_call_id") or f"call_{uuid.uuid4().hex[:12]}")
            arguments = data.get("arguments") if isinstance(data.get("arguments"), dict) else {}
            if kind == "cancel_call":
                self.log.emit("function_cancel", tool_call_id=call_id, function_name=name)
                await self.push_frame(FunctionCallCancelFrame(function_name=name, tool_call_id=call_id))
                return
            self.log.emit("function_call", tool_call_id=call_id, function_name=name, how=kind)
            if kind == "call_legacy":
                message = {
                    "label": "rtvi-ai",
                    "type": "llm-function-call",
                    "data": {"function_name": name, "tool_call_id": call_id, "args": arguments},
                }
                await self.push_frame(OutputTransportMessageUrgentFrame(message=message))
                return
            started = FunctionCallFromLLM(
                function_name=name, tool_call_id=call_id, arguments=arguments, context=None
            )
            await self.push_frame(FunctionCallsStartedFrame(function_calls=[started]))
            await self.push_frame(
                FunctionCallInProgressFrame(function_name=name, tool_call_id=call_id, arguments=arguments)
            )

    return FunctionsBrain


def _no_interrupt_mode(base: type) -> type:
    from pipecat.audio.vad.silero import SileroVADAnalyzer
    from pipecat.frames.frames import UserStartedSpeakingFrame, UserStoppedSpeakingFrame
    from pipecat.processors.audio.vad_processor import VADProcessor
    from pipecat.turns.user_start import VADUserTurnStartStrategy
    from pipecat.turns.user_stop import SpeechTimeoutUserTurnStopStrategy
    from pipecat.turns.user_turn_processor import UserTurnProcessor
    from pipecat.turns.user_turn_strategies import UserTurnStrategies

    class NoInterruptBrain(base):
        """Hears the user (VAD and the user-turn processor announce the turns) and never stops talking."""

        @classmethod
        def head_processors(cls) -> list:
            strategies = UserTurnStrategies(
                start=[VADUserTurnStartStrategy(enable_interruptions=False)],
                stop=[SpeechTimeoutUserTurnStopStrategy(user_speech_timeout=0.2, wait_for_transcript=False)],
            )
            return [
                VADProcessor(vad_analyzer=SileroVADAnalyzer()),
                UserTurnProcessor(user_turn_strategies=strategies),
            ]

        async def process_frame(self, frame, direction) -> None:
            if isinstance(frame, UserStartedSpeakingFrame):
                self.log.emit("user_turn", state="started", bot_speaking=self._speaking)
            elif isinstance(frame, UserStoppedSpeakingFrame):
                self.log.emit("user_turn", state="stopped", bot_speaking=self._speaking)
            await super().process_frame(frame, direction)

    return NoInterruptBrain


MODES: dict[str, Callable[[type], type]] = {
    "functions": _functions_mode,
    "no-interrupt": _no_interrupt_mode,
}

__all__ = ["MODES", "runner_call_data"]
