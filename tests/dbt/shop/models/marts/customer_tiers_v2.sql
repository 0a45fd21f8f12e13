-- a prerelease: newer than latest_version (1), so ref('customer_tiers') is still v1
select customer_id, signed_up_at, tier, tier in ('gold', 'silver') as is_upper
from {{ ref('stg_customers') }}
where region_code <> 'X'
