"""Record handlers of the queue and stream consumers, for Powertools batch processing."""
