select
    id as order_id,
    customer_id,
    ordered_at,
    status,
    amount_cents / 100.0 as amount,
    channel
from {{ source('raw', 'orders') }}
