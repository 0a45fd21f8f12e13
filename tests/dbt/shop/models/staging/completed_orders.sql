{{ config(materialized='ephemeral') }}
-- never a relation in the warehouse: kpimetrics inlines its compiled SQL
select order_id, customer_id, ordered_at, amount, channel
from {{ ref('stg_orders') }}
where status = 'completed'
