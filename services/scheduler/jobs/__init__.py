"""Jobs: submit, queue, place, follow and recover jobs of every kind (/api/jobs)."""
