select o.*, c.segment
from {{ source('shop', 'orders') }} as o
left join {{ source('shop', 'customers') }} as c using (customer_id)
where o.ordered_at >= '{{ var("start_date") }}'
