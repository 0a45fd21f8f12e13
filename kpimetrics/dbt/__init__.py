"""kpimetrics inside a dbt project (SPEC §8): finding the dbt project, reading its artifacts, and resolving
ref() and source() to the relations dbt built. dbt-core is never imported: only its files are read."""
