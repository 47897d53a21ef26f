"""The [functions] and [twilio] sections: valid tables load, round-trip through check-config's TOML, and keep
secret-like custom parameters out of listings. (Bad files are in tests/data/bad_configs.)"""

from __future__ import annotations

import sys
from pathlib import Path

from voiceterm.config_load import config_from_dict, load_config
from voiceterm.config_render import effective_config, render_toml
from voiceterm.core.function_handlers import CommandSpec, commands_from_config


def test_functions_and_twilio_load_and_round_trip(tmp_path: Path) -> None:
    cfg = config_from_dict(
        {
            "functions": {
                "builtin_mute": True,
                "commands": {"read_sensor": {"command": [sys.executable, "-c", "print(1)"], "timeout_s": 2}},
            },
            "twilio": {"call_sid": "CA1", "custom_parameters": {"user_id": "u1", "auth_token": "s3cret"}},
        },
        environ={},
    )
    assert commands_from_config(cfg.functions.commands) == [
        CommandSpec("read_sensor", (sys.executable, "-c", "print(1)"), 2.0, 1)
    ]
    shown = effective_config(cfg)["twilio"]["custom_parameters"]
    assert shown == {"user_id": "u1", "auth_token": "<set>"}  # masked like a header
    text = render_toml(cfg)
    assert "s3cret" not in text
    out = tmp_path / "out.toml"
    out.write_text(text.replace('"<set>"', '"s3cret"'))
    assert load_config(out, environ={}) == cfg
