-- kpimetrics: kpi reorder_rate_30d (ratio), grains: month
-- definition_hash: eba43081e8fe6969
-- Returns the rows `kpimetrics run` writes to kpi_values for this KPI.
-- TIMESTAMPTZ values are cut into periods in time zone UTC: run with the session time zone set to it.
WITH "__model_orders_enriched" AS (
  /* Orders with the buyer's segment and their place in the customer's order history. */
  /*   customer_order_number  1 for a customer's first order (since start_date), 2 for the next, ... */
  /*   is_repeat              true from the customer's second order on */
  /*   reordered_within_30d   true when the customer's previous order was at most 30 days earlier */
  WITH numbered AS (
    SELECT
      o.order_id,
      o.customer_id,
      o.ordered_at,
      o.region,
      o.channel,
      o.amount,
      o.discount,
      o.status,
      c.segment,
      ROW_NUMBER() OVER (PARTITION BY o.customer_id ORDER BY o.ordered_at, o.order_id) AS customer_order_number,
      LAG(o.ordered_at) OVER (PARTITION BY o.customer_id ORDER BY o.ordered_at, o.order_id) AS previous_ordered_at
    FROM "orders" AS o
    LEFT JOIN "customers" AS c
      ON c.customer_id = o.customer_id
    WHERE
      o.ordered_at >= CAST('2025-01-01' AS TIMESTAMP)
  )
  SELECT
    order_id,
    customer_id,
    ordered_at,
    region,
    channel,
    amount,
    discount,
    amount - discount AS net_amount,
    status,
    segment,
    customer_order_number,
    previous_ordered_at,
    customer_order_number > 1 AS is_repeat,
    COALESCE(previous_ordered_at >= ordered_at - INTERVAL '30 DAY', FALSE) AS reordered_within_30d
  FROM numbered
), "reorder_rate_30d__rows" AS (
  SELECT
    CAST(DATE_TRUNC('MONTH', CAST(CAST(ordered_at AS DATE) AS TIMESTAMP)) AS DATE) AS "__p",
    reordered_within_30d
  FROM "__model_orders_enriched"
  WHERE
    NOT ordered_at IS NULL
), "reorder_rate_30d__agg0" AS (
  SELECT
    "__p" AS "__p",
    COUNT(*) FILTER(WHERE
      reordered_within_30d) AS "__m0",
    COUNT(*) AS "__m1"
  FROM "reorder_rate_30d__rows"
  GROUP BY
    "__p"
), "reorder_rate_30d__bounds" AS (
  SELECT
    MIN("__p") AS "lo",
    MAX("__p") AS "hi"
  FROM "reorder_rate_30d__agg0"
), "reorder_rate_30d__spine" AS (
  SELECT
    CAST("__s" AS DATE) AS "period_start",
    ROW_NUMBER() OVER (ORDER BY CAST("__s" AS DATE)) AS "__i"
  FROM "reorder_rate_30d__bounds"
  CROSS JOIN GENERATE_SERIES(CAST("lo" AS TIMESTAMP), CAST("hi" AS TIMESTAMP), INTERVAL '1 MONTH') AS "__series"("__s")
)
SELECT
  'reorder_rate_30d' AS "name",
  'month' AS "grain",
  "__s"."period_start" AS "period_start",
  CAST("__s"."period_start" + INTERVAL '1 MONTH' AS DATE) AS "period_end",
  '' AS "dimension",
  CAST(NULL AS VARCHAR) AS "dimension_value",
  CAST(CAST("__a"."__m0" AS DOUBLE PRECISION) AS DOUBLE PRECISION) / NULLIF(CAST(CAST("__a"."__m1" AS DOUBLE PRECISION) AS DOUBLE PRECISION), 0) AS "value",
  CAST("__a"."__m0" AS DOUBLE PRECISION) AS "numerator",
  CAST("__a"."__m1" AS DOUBLE PRECISION) AS "denominator"
FROM "reorder_rate_30d__spine" AS "__s"
LEFT JOIN "reorder_rate_30d__agg0" AS "__a"
  ON "__a"."__p" = "__s"."period_start";
