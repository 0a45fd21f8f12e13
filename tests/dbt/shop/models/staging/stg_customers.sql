select
    id as customer_id,
    full_name as customer_name,
    lower(email) as email,
    region_code,
    tier,
    signed_up_at,
    updated_at
from {{ source('raw', 'customers') }}
