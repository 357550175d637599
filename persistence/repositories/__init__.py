"""All SQL lives here: one module per table family. Functions flush, never commit."""
