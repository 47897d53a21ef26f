"""frames.proto is pipecat's schema: same package, messages, field names, numbers, types, labels and
oneof, checked against the installed pipecat-ai (its .proto and its generated module), and the
generated frames_pb2.py (in the devkit: the daemon's own codec is protocol/pbwire.py) is up to date with our
.proto."""

from __future__ import annotations

import ast
import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

import voiceterm.protocol
import voiceterm_devkit

OUR_DIR = Path(voiceterm.protocol.__file__).parent  # frames.proto: the schema pbwire.py follows
PB2_DIR = Path(voiceterm_devkit.__file__).parent  # frames_pb2.py: generated from it, for tests and tools
FDP = descriptor_pb2.FieldDescriptorProto


def pipecat_dir() -> Path:
    spec = importlib.util.find_spec("pipecat")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("pipecat-ai is not installed (scripts/setup-venv test,bot installs it)")
    return Path(next(iter(spec.submodule_search_locations)))


def embedded_descriptor(pb2_path: Path) -> descriptor_pb2.FileDescriptorProto:
    """The FileDescriptorProto a generated module registers, read from its source without importing
    it (importing two copies would share one descriptor pool and prove nothing)."""
    tree = ast.parse(pb2_path.read_text())
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "AddSerializedFile"
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, bytes)
        ):
            return descriptor_pb2.FileDescriptorProto.FromString(node.args[0].value)
    raise AssertionError(f"no AddSerializedFile(b'...') in {pb2_path}")


def compiled_descriptor(proto: Path, tmp_path: Path) -> descriptor_pb2.FileDescriptorProto:
    protoc = shutil.which("protoc")
    if protoc is None:
        pytest.skip("protoc is not installed (scripts/gen-proto installs Debian's protobuf-compiler)")
    out = tmp_path / f"{proto.parent.name}.pb"
    subprocess.run(
        [protoc, f"--proto_path={proto.parent}", f"--descriptor_set_out={out}", proto.name],
        check=True,
        capture_output=True,
    )
    [file] = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
    # A descriptor set carries json_name on every field; generated Python modules leave it out.
    for msg in file.message_type:
        for f in msg.field:
            f.ClearField("json_name")
    return file


def summary(file: descriptor_pb2.FileDescriptorProto) -> dict[str, object]:
    """What the wire depends on, in a form whose diff reads well when it fails."""
    messages = {}
    for msg in file.message_type:
        real_oneofs = {
            i: o.name
            for i, o in enumerate(msg.oneof_decl)
            if not any(f.proto3_optional and f.oneof_index == i for f in msg.field)
        }
        messages[msg.name] = {
            "fields": {
                f.name: (
                    f.number,
                    FDP.Type.Name(f.type),
                    FDP.Label.Name(f.label),
                    f.type_name,
                    real_oneofs.get(f.oneof_index) if f.HasField("oneof_index") else None,
                    f.proto3_optional,
                )
                for f in msg.field
            },
            "oneofs": sorted(real_oneofs.values()),
        }
    return {"name": file.name, "package": file.package, "syntax": file.syntax, "messages": messages}


def test_our_generated_module_matches_our_proto(tmp_path):
    ours = compiled_descriptor(OUR_DIR / "frames.proto", tmp_path)
    assert embedded_descriptor(PB2_DIR / "frames_pb2.py") == ours, (
        "frames_pb2.py is stale: run scripts/gen-proto"
    )


def test_our_schema_is_pipecats_generated_schema():
    pipecat = embedded_descriptor(pipecat_dir() / "frames" / "protobufs" / "frames_pb2.py")
    ours = embedded_descriptor(PB2_DIR / "frames_pb2.py")
    assert summary(ours) == summary(pipecat)
    # Byte-identical descriptors are what lets both modules load into one process (the tests do).
    assert ours == pipecat


def test_our_proto_is_pipecats_proto(tmp_path):
    pipecat = compiled_descriptor(pipecat_dir() / "frames" / "frames.proto", tmp_path)
    ours = compiled_descriptor(OUR_DIR / "frames.proto", tmp_path)
    assert summary(ours) == summary(pipecat)


def test_schema_summary_has_what_the_protocol_page_says():
    s = summary(embedded_descriptor(PB2_DIR / "frames_pb2.py"))
    assert s["package"] == "pipecat" and s["syntax"] == "proto3"
    frame = s["messages"]["Frame"]
    assert frame["oneofs"] == ["frame"]
    assert {name: f[0] for name, f in frame["fields"].items()} == {
        "text": 1,
        "audio": 2,
        "transcription": 3,
        "message": 4,
        "interruption": 5,
    }
    audio = s["messages"]["AudioRawFrame"]["fields"]
    assert audio["audio"][:2] == (3, "TYPE_BYTES")
    assert audio["sample_rate"][:2] == (4, "TYPE_UINT32")
    assert audio["num_channels"][:2] == (5, "TYPE_UINT32")
    assert audio["pts"][:2] == (6, "TYPE_UINT64") and audio["pts"][5] is True  # proto3 optional
