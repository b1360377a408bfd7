"""Recording: what the gateway records about a request (`record`), and the writer that puts it
in the request log without the request path ever waiting (`writer`)."""

from arbstr.recording.record import AttemptRow, MemorySink, RecordSink, RequestRecord

__all__ = ["AttemptRow", "MemorySink", "RecordSink", "RequestRecord"]
