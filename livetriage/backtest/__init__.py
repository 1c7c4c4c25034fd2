"""Replay labelled recorded traffic through the pipeline and score it (``livetriage backtest``)."""
