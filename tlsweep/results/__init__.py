"""Where a sweep's results live and how they are read and written: locations, the Parquet store, the schema (pyarrow only)."""
