select
    o.order_id,
    o.customer_id,
    o.ordered_at,
    o.status,
    o.amount,
    o.channel,
    c.tier,
    r.region_name,
    o.status = 'completed' as is_completed
from {{ ref('stg_orders') }} as o
left join {{ ref('stg_customers') }} as c on c.customer_id = o.customer_id
left join {{ ref('regions') }} as r on r.region_code = c.region_code
