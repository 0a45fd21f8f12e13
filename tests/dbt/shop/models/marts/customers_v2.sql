select
    c.customer_id,
    c.customer_name,
    c.signed_up_at,
    r.region_name,
    c.tier,
    c.tier = 'gold' as is_premium
from {{ ref('stg_customers') }} as c
left join {{ ref('regions') }} as r on r.region_code = c.region_code
