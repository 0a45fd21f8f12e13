-- kpimetrics: standard chat_first_response_median (measure), grains: month
-- definition_hash: 1fc03f297409e773
-- Returns the rows `kpimetrics run` writes to kpi_values for this KPI.
-- TIMESTAMPTZ values are cut into periods in time zone UTC: run with the session time zone set to it.
WITH "chat_first_response_median__rows" AS (
  SELECT
    CAST(DATE_TRUNC('MONTH', CAST(CAST(opened_at AS DATE) AS TIMESTAMP)) AS DATE) AS "__p",
    first_response_seconds,
    channel
  FROM "support_tickets"
  WHERE
    NOT opened_at IS NULL
), "chat_first_response_median__agg0" AS (
  SELECT
    "__p" AS "__p",
    COUNT(*) FILTER(WHERE
      channel = 'chat') AS "__n0",
    PERCENTILE_CONT(0.5) WITHIN GROUP (ORDER BY
      first_response_seconds) FILTER(WHERE
      channel = 'chat') AS "__m1"
  FROM "chat_first_response_median__rows"
  GROUP BY
    "__p"
), "chat_first_response_median__bounds" AS (
  SELECT
    MIN("__p") AS "lo",
    MAX("__p") AS "hi"
  FROM "chat_first_response_median__agg0"
), "chat_first_response_median__spine" AS (
  SELECT
    CAST("__s" AS DATE) AS "period_start",
    ROW_NUMBER() OVER (ORDER BY CAST("__s" AS DATE)) AS "__i"
  FROM "chat_first_response_median__bounds"
  CROSS JOIN GENERATE_SERIES(CAST("lo" AS TIMESTAMP), CAST("hi" AS TIMESTAMP), INTERVAL '1 MONTH') AS "__series"("__s")
)
SELECT
  'chat_first_response_median' AS "name",
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
FROM "chat_first_response_median__spine" AS "__s"
LEFT JOIN "chat_first_response_median__agg0" AS "__a"
  ON "__a"."__p" = "__s"."period_start";
