"""Pure wire protocol: Pipecat protobuf frames, RTVI messages, Twilio media streams."""
