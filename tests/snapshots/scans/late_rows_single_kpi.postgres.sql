-- the pre-aggregate, from 2025-11-20 on
WITH "__rows" AS (
  SELECT
    CAST(ordered_at AS DATE) AS "__p",
    amount
  FROM "main"."orders"
  WHERE
    NOT ordered_at IS NULL AND ordered_at >= CAST('2025-11-20' AS DATE)
)
SELECT
  "__p" AS "__p",
  COUNT(*) AS "__q0",
  SUM(amount) AS "__q1"
FROM "__rows"
GROUP BY
  "__p";

-- the scan
WITH "__rows" AS (
  SELECT
    CAST(ordered_at AS DATE) AS "__p",
    amount
  FROM "main"."orders"
  WHERE
    NOT ordered_at IS NULL AND ordered_at >= CAST('2025-11-20' AS DATE)
), "__pp" AS (
  SELECT
    "__p",
    "__q0",
    "__q1"
  FROM kpi.kpi_stage_pp
  UNION ALL
  SELECT
    "__p",
    "__q0",
    "__q1"
  FROM kpi.kpi_partials_kept
  WHERE
    "__p" >= CAST('2025-11-01' AS DATE) AND "__p" < CAST('2025-11-20' AS DATE)
), "__bounds" AS (
  SELECT
    MIN("__p") AS "lo",
    MAX("__p") AS "hi"
  FROM "__pp"
), "__agg0" AS (
  SELECT
    CAST(DATE_TRUNC('MONTH', CAST("__p" AS TIMESTAMP)) AS DATE) AS "__p",
    SUM("__q0") AS "__n0",
    SUM("__q1") AS "__m1"
  FROM "__pp"
  GROUP BY
    CAST(DATE_TRUNC('MONTH', CAST("__p" AS TIMESTAMP)) AS DATE)
), "__spine" AS (
  SELECT
    CAST("__s" AS DATE) AS "period_start",
    ROW_NUMBER() OVER (ORDER BY CAST("__s" AS DATE)) AS "__i"
  FROM "__bounds"
  CROSS JOIN GENERATE_SERIES(
    CAST(LEAST(
      CAST(DATE_TRUNC('MONTH', CAST("lo" AS TIMESTAMP)) AS DATE),
      CAST('2025-11-01' AS DATE)
    ) AS TIMESTAMP),
    CAST(CAST(DATE_TRUNC('MONTH', CAST("hi" AS TIMESTAMP)) AS DATE) AS TIMESTAMP),
    INTERVAL '1 MONTH'
  ) AS "__series"("__s")
)
SELECT
  'revenue' AS "name",
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
FROM "__spine" AS "__s"
LEFT JOIN "__agg0" AS "__a"
  ON "__a"."__p" = "__s"."period_start"
WHERE
  "__s"."period_start" >= CAST('2025-11-01' AS DATE);
