select customer_id, customer_name, signed_up_at, region_code, tier
from {{ ref('stg_customers') }}
