"""The HTTP collector (`personify collect`): events from browsers, backends and Segment-style
clients, validated like the worker validates them, onto the input topics (docs/collector.md)."""
