-- kpimetrics: kpi first_response_p90 (measure), grains: month
-- definition_hash: 58fc143f7086cf4b
-- Returns the rows `kpimetrics run` writes to kpi_values for this KPI.
-- TIMESTAMPTZ values are cut into periods in time zone UTC: run with the session time zone set to it.
WITH "first_response_p90__rows" AS (
  SELECT
    CAST(DATE_TRUNC('MONTH', CAST(CAST(opened_at AS DATE) AS TIMESTAMP)) AS DATE) AS "__p",
    first_response_seconds
  FROM "support_tickets"
  WHERE
    NOT opened_at IS NULL
), "first_response_p90__agg0" AS (
  SELECT
    "__p" AS "__p",
    PERCENTILE_CONT(0.9) WITHIN GROUP (ORDER BY
      first_response_seconds) AS "__m0"
  FROM "first_response_p90__rows"
  GROUP BY
    "__p"
), "first_response_p90__bounds" AS (
  SELECT
    MIN("__p") AS "lo",
    MAX("__p") AS "hi"
  FROM "first_response_p90__agg0"
), "first_response_p90__spine" AS (
  SELECT
    CAST("__s" AS DATE) AS "period_start",
    ROW_NUMBER() OVER (ORDER BY CAST("__s" AS DATE)) AS "__i"
  FROM "first_response_p90__bounds"
  CROSS JOIN GENERATE_SERIES(CAST("lo" AS TIMESTAMP), CAST("hi" AS TIMESTAMP), INTERVAL '1 MONTH') AS "__series"("__s")
)
SELECT
  'first_response_p90' AS "name",
  'month' AS "grain",
  "__s"."period_start" AS "period_start",
  CAST("__s"."period_start" + INTERVAL '1 MONTH' AS DATE) AS "period_end",
  '' AS "dimension",
  CAST(NULL AS VARCHAR) AS "dimension_value",
  CAST("__a"."__m0" AS DOUBLE PRECISION) AS "value",
  CAST(NULL AS DOUBLE PRECISION) AS "numerator",
  CAST(NULL AS DOUBLE PRECISION) AS "denominator"
FROM "first_response_p90__spine" AS "__s"
LEFT JOIN "first_response_p90__agg0" AS "__a"
  ON "__a"."__p" = "__s"."period_start";
