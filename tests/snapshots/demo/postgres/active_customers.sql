-- kpimetrics: kpi active_customers (measure), grains: month, week
-- definition_hash: b039a7cb6edbdb4d
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
), "active_customers__rows" AS (
  SELECT
    CAST(ordered_at AS DATE) AS "__p",
    COALESCE(CAST(segment AS VARCHAR), '(null)') AS "__d0",
    customer_id
  FROM "__model_orders_enriched"
  WHERE
    NOT ordered_at IS NULL
), "active_customers__month_agg0" AS (
  SELECT
    CAST(DATE_TRUNC('MONTH', CAST("__p" AS TIMESTAMP)) AS DATE) AS "__p",
    CAST(NULL AS VARCHAR) AS "__d0",
    0 AS "__set",
    COUNT(DISTINCT customer_id) AS "__m0"
  FROM "active_customers__rows"
  GROUP BY
    CAST(DATE_TRUNC('MONTH', CAST("__p" AS TIMESTAMP)) AS DATE)
  UNION ALL
  SELECT
    CAST(DATE_TRUNC('MONTH', CAST("__p" AS TIMESTAMP)) AS DATE) AS "__p",
    "__d0",
    1 AS "__set",
    COUNT(DISTINCT customer_id) AS "__m0"
  FROM "active_customers__rows"
  GROUP BY
    CAST(DATE_TRUNC('MONTH', CAST("__p" AS TIMESTAMP)) AS DATE),
    "__d0"
), "active_customers__month_bounds" AS (
  SELECT
    MIN("__p") AS "lo",
    MAX("__p") AS "hi"
  FROM "active_customers__month_agg0"
), "active_customers__month_spine" AS (
  SELECT
    CAST("__s" AS DATE) AS "period_start",
    ROW_NUMBER() OVER (ORDER BY CAST("__s" AS DATE)) AS "__i"
  FROM "active_customers__month_bounds"
  CROSS JOIN GENERATE_SERIES(CAST("lo" AS TIMESTAMP), CAST("hi" AS TIMESTAMP), INTERVAL '1 MONTH') AS "__series"("__s")
), "active_customers__week_agg0" AS (
  SELECT
    CAST(DATE_TRUNC('WEEK', CAST("__p" AS TIMESTAMP)) AS DATE) AS "__p",
    CAST(NULL AS VARCHAR) AS "__d0",
    0 AS "__set",
    COUNT(DISTINCT customer_id) AS "__m0"
  FROM "active_customers__rows"
  GROUP BY
    CAST(DATE_TRUNC('WEEK', CAST("__p" AS TIMESTAMP)) AS DATE)
  UNION ALL
  SELECT
    CAST(DATE_TRUNC('WEEK', CAST("__p" AS TIMESTAMP)) AS DATE) AS "__p",
    "__d0",
    1 AS "__set",
    COUNT(DISTINCT customer_id) AS "__m0"
  FROM "active_customers__rows"
  GROUP BY
    CAST(DATE_TRUNC('WEEK', CAST("__p" AS TIMESTAMP)) AS DATE),
    "__d0"
), "active_customers__week_bounds" AS (
  SELECT
    MIN("__p") AS "lo",
    MAX("__p") AS "hi"
  FROM "active_customers__week_agg0"
), "active_customers__week_spine" AS (
  SELECT
    CAST("__s" AS DATE) AS "period_start",
    ROW_NUMBER() OVER (ORDER BY CAST("__s" AS DATE)) AS "__i"
  FROM "active_customers__week_bounds"
  CROSS JOIN GENERATE_SERIES(CAST("lo" AS TIMESTAMP), CAST("hi" AS TIMESTAMP), INTERVAL '7 DAY') AS "__series"("__s")
)
SELECT
  "name",
  "grain",
  "period_start",
  "period_end",
  "dimension",
  "dimension_value",
  "value",
  "numerator",
  "denominator"
FROM (
  SELECT
    'active_customers' AS "name",
    'month' AS "grain",
    "__s"."period_start" AS "period_start",
    CAST("__s"."period_start" + INTERVAL '1 MONTH' AS DATE) AS "period_end",
    '' AS "dimension",
    CAST(NULL AS VARCHAR) AS "dimension_value",
    CAST("__a"."__m0" AS DOUBLE PRECISION) AS "value",
    CAST(NULL AS DOUBLE PRECISION) AS "numerator",
    CAST(NULL AS DOUBLE PRECISION) AS "denominator"
  FROM "active_customers__month_spine" AS "__s"
  LEFT JOIN "active_customers__month_agg0" AS "__a"
    ON "__a"."__p" = "__s"."period_start" AND "__a"."__set" = 0
  UNION ALL
  SELECT
    'active_customers' AS "name",
    'month' AS "grain",
    "__a"."__p" AS "period_start",
    CAST("__a"."__p" + INTERVAL '1 MONTH' AS DATE) AS "period_end",
    'segment' AS "dimension",
    "__a"."__d0" AS "dimension_value",
    CAST("__a"."__m0" AS DOUBLE PRECISION) AS "value",
    CAST(NULL AS DOUBLE PRECISION) AS "numerator",
    CAST(NULL AS DOUBLE PRECISION) AS "denominator"
  FROM "active_customers__month_agg0" AS "__a"
  WHERE
    "__a"."__set" = 1
  UNION ALL
  SELECT
    'active_customers' AS "name",
    'week' AS "grain",
    "__s"."period_start" AS "period_start",
    CAST("__s"."period_start" + INTERVAL '7 DAY' AS DATE) AS "period_end",
    '' AS "dimension",
    CAST(NULL AS VARCHAR) AS "dimension_value",
    CAST("__a"."__m0" AS DOUBLE PRECISION) AS "value",
    CAST(NULL AS DOUBLE PRECISION) AS "numerator",
    CAST(NULL AS DOUBLE PRECISION) AS "denominator"
  FROM "active_customers__week_spine" AS "__s"
  LEFT JOIN "active_customers__week_agg0" AS "__a"
    ON "__a"."__p" = "__s"."period_start" AND "__a"."__set" = 0
  UNION ALL
  SELECT
    'active_customers' AS "name",
    'week' AS "grain",
    "__a"."__p" AS "period_start",
    CAST("__a"."__p" + INTERVAL '7 DAY' AS DATE) AS "period_end",
    'segment' AS "dimension",
    "__a"."__d0" AS "dimension_value",
    CAST("__a"."__m0" AS DOUBLE PRECISION) AS "value",
    CAST(NULL AS DOUBLE PRECISION) AS "numerator",
    CAST(NULL AS DOUBLE PRECISION) AS "denominator"
  FROM "active_customers__week_agg0" AS "__a"
  WHERE
    "__a"."__set" = 1
) AS "__u";
