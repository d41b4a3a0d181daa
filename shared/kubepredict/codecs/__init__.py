"""Wire formats: one module per format, each turning a request body into a Table and a result into a response."""
