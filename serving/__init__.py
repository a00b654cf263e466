"""The realtime worker: sources -> detection -> classification -> sinks, with metrics and a preview page."""
