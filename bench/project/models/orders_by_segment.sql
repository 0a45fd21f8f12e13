-- Orders with the buyer's segment.
select o.order_id, o.customer_id, o.ordered_at, o.amount, c.segment
from {{ source('shop', 'orders') }} as o
left join {{ source('shop', 'customers') }} as c on c.customer_id = o.customer_id
