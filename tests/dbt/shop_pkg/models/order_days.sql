{{ config(materialized='table', alias='PkgOrderDays') }}
select
    cast(ordered_at as date) as order_date,
    count(*) as orders,
    sum(amount) as revenue
from {{ ref('shop', 'stg_orders') }}
group by 1
