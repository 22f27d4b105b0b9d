"""Reading raw partitions into cairn's ingested tables, one module per job: the table's
columns, the records of a text file, its numbers, delimited text, Parquet, built-in data sets."""
