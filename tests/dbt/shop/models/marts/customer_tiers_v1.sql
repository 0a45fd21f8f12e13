select customer_id, signed_up_at, tier
from {{ ref('stg_customers') }}
