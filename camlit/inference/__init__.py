"""A trained checkpoint to answers: test-time crops, Trainer.predict, aggregation, balancing, CSVs, scores."""
