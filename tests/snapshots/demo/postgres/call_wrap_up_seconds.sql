-- kpimetrics: standard call_wrap_up_seconds (measure), grains: month
-- definition_hash: 3dea5ee8672a6616
-- Returns the rows `kpimetrics run` writes to kpi_values for this KPI.
-- TIMESTAMPTZ values are cut into periods in time zone UTC: run with the session time zone set to it.
WITH "call_wrap_up_seconds__rows" AS (
  SELECT
    CAST(DATE_TRUNC('MONTH', CAST(CAST(opened_at AS DATE) AS TIMESTAMP)) AS DATE) AS "__p",
    wrap_up_seconds,
    channel
  FROM "support_tickets"
  WHERE
    NOT opened_at IS NULL
), "call_wrap_up_seconds__agg0" AS (
  SELECT
    "__p" AS "__p",
    COUNT(*) FILTER(WHERE
      channel = 'phone') AS "__n0",
    AVG(wrap_up_seconds) FILTER(WHERE
      channel = 'phone') AS "__m1"
  FROM "call_wrap_up_seconds__rows"
  GROUP BY
    "__p"
), "call_wrap_up_seconds__bounds" AS (
  SELECT
    MIN("__p") AS "lo",
    MAX("__p") AS "hi"
  FROM "call_wrap_up_seconds__agg0"
), "call_wrap_up_seconds__spine" AS (
  SELECT
    CAST("__s" AS DATE) AS "period_start",
    ROW_NUMBER() OVER (ORDER BY CAST("__s" AS DATE)) AS "__i"
  FROM "call_wrap_up_seconds__bounds"
  CROSS JOIN GENERATE_SERIES(CAST("lo" AS TIMESTAMP), CAST("hi" AS TIMESTAMP), INTERVAL '1 MONTH') AS "__series"("__s")
)
SELECT
  'call_wrap_up_seconds' AS "name",
  'month' AS "grain",
  "__s"."period_start" AS "period_start",
  CAST("__s"."period_start" + INTERVAL '1 MONTH' AS DATE) AS "period_end",
  '' AS "dimension",
  CAST(NULL AS VARCHAR) AS "dimension_value",
  CASE
    WHEN COALESCE("__a"."__n0", 0) > 0
    THEN CAST("__a"."__m1" AS DOUBLE PRECISION)
    ELSE CAST(NULL AS DOUBLE PRECISION)
  END AS "value",
  CAST(NULL AS DOUBLE PRECISION) AS "numerator",
  CAST(NULL AS DOUBLE PRECISION) AS "denominator"
FROM "call_wrap_up_seconds__spine" AS "__s"
LEFT JOIN "call_wrap_up_seconds__agg0" AS "__a"
  ON "__a"."__p" = "__s"."period_start";
