"""effc.search: GEVO-ML evolutionary search over a model's MLIR and IREE options (`effc search`).

genome (edit lists, stable op ids, replay) -> mutate (operators, repair, crossover) -> evaluate
(isolated worker) -> pool (local processes or Ray) -> store (SQLite) -> evolve (NSGA-II) -> report;
api.py is the Python entry point, workloads.py the digits MLP/CNN and MiniLM block.
"""
