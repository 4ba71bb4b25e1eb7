"""effc.bench.gevo: the GEVO-ML search benchmark."""
