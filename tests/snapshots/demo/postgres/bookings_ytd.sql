-- kpimetrics: kpi bookings_ytd (measure), grains: month
-- definition_hash: 8b98dc8b546d77bc
-- Returns the rows `kpimetrics run` writes to kpi_values for this KPI.
-- TIMESTAMPTZ values are cut into periods in time zone UTC: run with the session time zone set to it.
WITH "bookings_ytd__rows" AS (
  SELECT
    CAST(DATE_TRUNC('MONTH', CAST(CAST(ordered_at AS DATE) AS TIMESTAMP)) AS DATE) AS "__p",
    amount,
    status
  FROM "orders"
  WHERE
    NOT ordered_at IS NULL
), "bookings_ytd__bounds" AS (
  SELECT
    MIN("__p") AS "lo",
    MAX("__p") AS "hi"
  FROM "bookings_ytd__rows"
), "bookings_ytd__spine" AS (
  SELECT
    CAST("__s" AS DATE) AS "period_start",
    ROW_NUMBER() OVER (ORDER BY CAST("__s" AS DATE)) AS "__i"
  FROM "bookings_ytd__bounds"
  CROSS JOIN GENERATE_SERIES(CAST("lo" AS TIMESTAMP), CAST("hi" AS TIMESTAMP), INTERVAL '1 MONTH') AS "__series"("__s")
), "bookings_ytd__map_to_date_year" AS (
  SELECT
    "__a"."period_start" AS "__src",
    "__b"."period_start" AS "__dst"
  FROM "bookings_ytd__spine" AS "__a"
  JOIN "bookings_ytd__spine" AS "__b"
    ON CAST(DATE_TRUNC('YEAR', CAST("__a"."period_start" AS TIMESTAMP)) AS DATE) = CAST(DATE_TRUNC('YEAR', CAST("__b"."period_start" AS TIMESTAMP)) AS DATE)
    AND "__b"."period_start" >= "__a"."period_start"
), "bookings_ytd__agg0_pp" AS (
  SELECT
    "__p" AS "__p",
    COUNT(*) FILTER(WHERE
      status <> 'cancelled') AS "__q0",
    SUM(amount) FILTER(WHERE
      status <> 'cancelled') AS "__q1"
  FROM "bookings_ytd__rows"
  GROUP BY
    "__p"
), "bookings_ytd__agg0" AS (
  SELECT
    "__dst" AS "__p",
    SUM("__q0") AS "__n0",
    SUM("__q1") AS "__m1"
  FROM "bookings_ytd__agg0_pp"
  JOIN "bookings_ytd__map_to_date_year"
    ON "bookings_ytd__agg0_pp"."__p" = "__src"
  GROUP BY
    "__dst"
)
SELECT
  'bookings_ytd' AS "name",
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
FROM "bookings_ytd__spine" AS "__s"
LEFT JOIN "bookings_ytd__agg0" AS "__a"
  ON "__a"."__p" = "__s"."period_start";
