-- parsed, compiled and in the manifest, but left out of the suite's `dbt build` (--exclude refunds): a relation
-- dbt knows and has not built, as after a `dbt build -s` of other models
select order_id, ordered_at, amount
from {{ ref('stg_orders') }}
where status = 'returned'
