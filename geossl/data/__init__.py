"""Loading for pretraining: multi-sensor views, the data module, statistics, normalisation."""
