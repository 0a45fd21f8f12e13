{{ config(materialized='view', alias='pkg_orders') }}
-- the package's own `orders`, beside the root project's: ref('orders') is the root's, ref('shop_pkg', 'orders') this
select order_id, ordered_at, amount
from {{ ref('shop', 'stg_orders') }}
where channel = 'store'
