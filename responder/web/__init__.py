"""Browser-facing parts of the service: the call page and live transcripts."""
