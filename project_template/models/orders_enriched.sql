-- Orders with the buyer's segment and their place in the customer's order history.
--   customer_order_number  1 for a customer's first order (since start_date), 2 for the next, ...
--   is_repeat              true from the customer's second order on
--   reordered_within_30d   true when the customer's previous order was at most 30 days earlier
with numbered as (
    select
        o.order_id,
        o.customer_id,
        o.ordered_at,
        o.region,
        o.channel,
        o.amount,
        o.discount,
        o.status,
        c.segment,
        row_number() over (partition by o.customer_id order by o.ordered_at, o.order_id) as customer_order_number,
        lag(o.ordered_at) over (partition by o.customer_id order by o.ordered_at, o.order_id) as previous_ordered_at
    from {{ source('shop', 'orders') }} as o
    left join {{ source('shop', 'customers') }} as c
        on c.customer_id = o.customer_id
    where o.ordered_at >= cast('{{ var('start_date') }}' as timestamp)
)

select
    order_id,
    customer_id,
    ordered_at,
    region,
    channel,
    amount,
    discount,
    amount - discount as net_amount,
    status,
    segment,
    customer_order_number,
    previous_ordered_at,
    customer_order_number > 1 as is_repeat,
    coalesce(previous_ordered_at >= ordered_at - interval '30' day, false) as reordered_within_30d
from numbered
