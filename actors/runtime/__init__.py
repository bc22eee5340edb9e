"""The actor runtime: what runs actors, knowing nothing of WhatsApp or OpenAI.

``supervisor`` holds the registry, the supervisor and the idle stop; ``mailbox`` an actor's
bounded FIFO; ``logcontext`` which actor a log line is about; ``telemetry`` the metrics the
actors observe while they work.
"""
