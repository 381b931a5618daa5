"""Stand-alone tools around training (tiny model builder; later merge_adapter, vLLM adapters, generate)."""
