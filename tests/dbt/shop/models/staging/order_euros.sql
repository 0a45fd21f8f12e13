{{ config(materialized='ephemeral') }}
-- integer division: whole euros on PostgreSQL (7 / 2 = 3), a fraction on DuckDB (3.5). Compiled SQL is in the
-- warehouse's dialect, whatever dialect the kpimetrics project writes its own SQL in.
select id as order_id, ordered_at, amount_cents / 100 as whole_euros
from {{ source('raw', 'orders') }}
