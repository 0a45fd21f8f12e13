select customer_id, customer_name, region, segment, signed_up_on
from {{ ref('raw_customers') }}
