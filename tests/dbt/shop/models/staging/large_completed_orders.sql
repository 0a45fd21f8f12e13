{{ config(materialized='ephemeral') }}
-- an ephemeral model over another: its compiled SQL carries the first as a __dbt__cte__ of its own
select order_id, ordered_at, amount, channel
from {{ ref('completed_orders') }}
where amount >= 100
