"""Storage: one interface (:mod:`eventodb.store.base`) and one module per backend."""
