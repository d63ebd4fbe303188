"""The event queue adapters (SQS FIFO and its dead-letter queue)."""
