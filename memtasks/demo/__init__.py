"""The main job (``make run`` / ``memtasks demo``): a local fleet driven by a synthetic agent."""
