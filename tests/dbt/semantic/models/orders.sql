select order_id, customer_id, ordered_at, channel, status, amount, discount, is_gift, items
from {{ ref('raw_orders') }}
