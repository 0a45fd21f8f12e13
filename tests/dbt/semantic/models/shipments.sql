-- completed orders shipped two days after they were placed: a semantic model with a time dimension of its own
select order_id, customer_id, ordered_at + interval '2 days' as shipped_at, items
from {{ ref('raw_orders') }}
where status = 'completed'
